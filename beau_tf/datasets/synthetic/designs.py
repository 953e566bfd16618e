"""What a synthetic product looks like: its package, colours, print and name.

`product_spec` designs catalogue product `product_index` under a seed: a
package (`Form`: shape, proportions, body and cap colours) and its print
(`Label`: colours, pattern, a made-up brand and the kind of goods). Products
come in pairs that may share a package and brand (a product line) or a label
(a shade range), so retrieval is not solved by colour alone. `random_spec`
designs a package from a generator alone, for goods in no catalogue.
"""

import dataclasses

import numpy as np

from beau_tf.datasets.synthetic import randomness

Colour = tuple[int, int, int]

_SHAPES = ("bottle", "jar", "tube", "box", "lipstick", "compact", "pump")
_PATTERNS = ("stripes", "dots", "chevrons", "gradient", "solid")
_CAP_STYLES = ("screw", "dome", "dropper", "flat")
# (min width, max width, min height, max height) as fractions of the frame.
_SIZE_RANGES = {
    "bottle": (0.26, 0.40, 0.74, 0.88),
    "jar": (0.56, 0.72, 0.42, 0.56),
    "tube": (0.26, 0.34, 0.76, 0.88),
    "box": (0.40, 0.54, 0.58, 0.80),
    "lipstick": (0.19, 0.25, 0.72, 0.86),
    "compact": (0.58, 0.72, 0.0, 0.0),
    "pump": (0.28, 0.40, 0.78, 0.88),
}
_KINDS = {
    "bottle": (
        "TONER",
        "SERUM",
        "SHAMPOO",
        "OLIVE OIL",
        "SAUCE",
        "JUICE",
        "PARFUM",
        "MICELLAR",
    ),
    "jar": ("CREAM", "BALM", "HONEY", "JAM", "MASK", "BUTTER", "NIGHT"),
    "tube": ("GEL", "LOTION", "HAND CREAM", "SPF 50", "SCRUB", "PASTE"),
    "box": ("TEA", "CEREAL", "PARFUM", "COCOA", "SOAP", "OATS", "CRACKERS"),
    "lipstick": ("ROUGE", "MATTE", "GLOSS", "VELVET", "SATIN"),
    "compact": ("POWDER", "BLUSH", "BRONZER", "GLOW"),
    "pump": ("HAND WASH", "LOTION", "FOAM", "CLEANSER", "SOAP"),
}
_BODY_COLOURS: tuple[Colour, ...] = (
    (22, 38, 74),
    (233, 176, 186),
    (28, 28, 30),
    (236, 228, 214),
    (36, 92, 64),
    (120, 24, 40),
    (160, 88, 28),
    (24, 128, 136),
    (170, 152, 212),
    (206, 164, 72),
    (234, 106, 86),
    (112, 176, 224),
    (108, 120, 56),
    (226, 176, 36),
    (70, 72, 80),
    (198, 30, 42),
    (246, 244, 240),
    (60, 30, 80),
)
_CAP_COLOURS: tuple[Colour, ...] = (
    (212, 175, 95),
    (196, 198, 204),
    (26, 26, 28),
    (214, 150, 130),
    (242, 242, 240),
    (120, 24, 40),
    (22, 38, 74),
    (150, 150, 156),
)
_LABEL_COLOURS: tuple[Colour, ...] = _BODY_COLOURS + (
    (255, 255, 255),
    (250, 236, 200),
    (255, 210, 220),
    (200, 230, 210),
)
WHITE: Colour = (255, 255, 255)
_ONSETS = (
    "B",
    "C",
    "D",
    "F",
    "G",
    "L",
    "M",
    "N",
    "P",
    "R",
    "S",
    "T",
    "V",
    "Z",
    "CH",
    "BR",
    "FL",
    "GR",
    "KL",
    "PR",
    "ST",
    "TR",
    "SH",
)
_VOWELS = ("A", "E", "I", "O", "U", "AU", "EA", "IO", "Y", "E", "A", "O")
_CODAS = ("", "", "", "", "N", "R", "S", "L", "X", "NE", "LLE", "RA", "T")


@dataclasses.dataclass(frozen=True)
class Form:
    """The package: shape, proportions (fractions of the frame) and colours."""

    shape: str
    width: float
    height: float
    body: Colour
    cap: Colour
    cap_style: str
    gloss: float
    cap_ratio: float
    front_label: bool


@dataclasses.dataclass(frozen=True)
class Label:
    """The print: label colours, pattern and words."""

    colour: Colour
    accent: Colour
    pattern: str
    frequency: float
    angle: float
    duty: float
    panel: Colour | None
    brand: str
    kind: str
    white_rules: bool


@dataclasses.dataclass(frozen=True)
class ProductSpec:
    """One product's design: its package and the print on it."""

    form: Form
    label: Label


def colour_distance(a: Colour, b: Colour) -> float:
    """The Euclidean distance between two RGB colours."""
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


def _pick_far(
    rng,
    options,
    avoid: Colour,
    min_distance: float,
    also_avoid: Colour | None = None,
) -> Colour:
    """A random option at least `min_distance` (RGB) from the colours to avoid."""
    far = [
        c
        for c in options
        if colour_distance(c, avoid) >= min_distance
        and (
            also_avoid is None or colour_distance(c, also_avoid) >= min_distance
        )
    ]
    return randomness.pick(rng, far or options)


def random_brand(rng: np.random.Generator) -> str:
    """A made-up, pronounceable brand word of at most nine letters."""
    word = ""
    for _ in range(int(rng.integers(2, 4))):
        word += randomness.pick(rng, _ONSETS) + randomness.pick(rng, _VOWELS)
    word = (word + randomness.pick(rng, _CODAS))[:9]
    return word if rng.random() < 0.6 else word.capitalize()


def _random_form(rng: np.random.Generator, shape: str) -> Form:
    """A package of `shape` with random proportions and colours."""
    w_lo, w_hi, h_lo, h_hi = _SIZE_RANGES[shape]
    width = float(rng.uniform(w_lo, w_hi))
    height = width if shape == "compact" else float(rng.uniform(h_lo, h_hi))
    body = randomness.pick(rng, _BODY_COLOURS)
    return Form(
        shape=shape,
        width=width,
        height=height,
        body=body,
        cap=_pick_far(rng, _CAP_COLOURS, body, 60),
        cap_style=randomness.pick(rng, _CAP_STYLES),
        gloss=float(rng.uniform(0.1, 0.55)),
        cap_ratio=float(rng.uniform(0.36, 0.56)),
        front_label=bool(rng.random() < 0.45),
    )


def _random_label(rng: np.random.Generator, shape: str, body: Colour) -> Label:
    """A print that stands out from `body`, naming goods sold in `shape`."""
    colour = _pick_far(rng, _LABEL_COLOURS, body, 90)
    accent = _pick_far(rng, _LABEL_COLOURS, colour, 110)
    pattern = randomness.pick(rng, _PATTERNS)
    panel = None
    if pattern != "solid" and rng.random() < 0.7:
        panel = WHITE if rng.random() < 0.5 else colour
    return Label(
        colour=colour,
        accent=accent,
        pattern=pattern,
        frequency=float(rng.uniform(3.0, 8.0)),
        angle=float(randomness.pick(rng, (0.0, 90.0, 45.0, -45.0))),
        duty=float(rng.uniform(0.25, 0.6)),
        panel=panel,
        brand=random_brand(rng),
        kind=randomness.pick(rng, _KINDS[shape]),
        white_rules=bool(rng.random() < 0.5),
    )


def product_spec(product_index: int, seed: int) -> ProductSpec:
    """The design of one product; odd products are variants of their partner.

    Even products cycle through the shapes, so any 14 consecutive products show
    all of them. An odd product is, at random, the next item of the same line
    (same package and brand, new label), a shade of it (same label, new body
    and cap colours) or unrelated.
    """
    rng = randomness.keyed_rng(seed, randomness.PRODUCT_STREAM, product_index)
    if product_index % 2 == 0:
        shape = _SHAPES[(product_index // 2) % len(_SHAPES)]
    else:
        shape = randomness.pick(rng, _SHAPES)
    form = _random_form(rng, shape)
    label = _random_label(rng, shape, form.body)
    if product_index % 2 == 0:
        return ProductSpec(form, label)
    base = product_spec(product_index - 1, seed)
    mode = rng.random()
    if mode < 0.4:  # Same line: package and brand kept, label redesigned.
        label = _random_label(rng, base.form.shape, base.form.body)
        colour = _pick_far(
            rng,
            _LABEL_COLOURS,
            base.label.colour,
            120,
            also_avoid=base.form.body,
        )
        pattern = label.pattern
        if pattern == base.label.pattern:
            pattern = _PATTERNS[(_PATTERNS.index(pattern) + 1) % len(_PATTERNS)]
        label = dataclasses.replace(
            label,
            colour=colour,
            pattern=pattern,
            brand=base.label.brand,
            accent=_pick_far(rng, _LABEL_COLOURS, colour, 110),
        )
        return ProductSpec(base.form, label)
    if mode < 0.65:  # A shade: same print on a body of another colour.
        body = _pick_far(rng, _BODY_COLOURS, base.form.body, 140)
        cap = _pick_far(rng, _CAP_COLOURS, base.form.cap, 80, also_avoid=body)
        form = dataclasses.replace(base.form, body=body, cap=cap)
        return ProductSpec(form, base.label)
    return ProductSpec(form, label)


def random_spec(rng: np.random.Generator) -> ProductSpec:
    """A design drawn from `rng` alone: a random shape, package and print."""
    shape = randomness.pick(rng, _SHAPES)
    form = _random_form(rng, shape)
    return ProductSpec(form, _random_label(rng, shape, form.body))
