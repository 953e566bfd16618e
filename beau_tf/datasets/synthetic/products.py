"""Synthetic catalogue products: package designs drawn on pure white.

`render_product` draws a cosmetics or grocery package (bottle, jar, tube, box,
lipstick, compact, pump) on pure white: a shaded body, a cap, a patterned label
with a brand word. Some print is white, so a mask must keep white pixels inside
the product. Products come in pairs that may share a shape and colours (a
product line) or a label (a shade range), so retrieval is not solved by colour
alone.

`product_sprite` gives the same product cut out, for `synthetic_scenes` to
place in a photo, and `stranger_sprite` a package that is in no catalogue.

Every image is a pure function of its indices and `seed`: randomness comes
from `numpy.random.Generator(PCG64)` keyed by (seed, stream, indices), see
`keyed_rng`.
"""

import dataclasses
import functools

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

Colour = tuple[int, int, int]

# Independent random streams: an image's randomness is keyed by
# (seed, stream, indices), so no image depends on how many others are drawn.
PRODUCT_STREAM, QUERY_STREAM, BACKGROUND_STREAM = 1, 2, 3

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
_WHITE: Colour = (255, 255, 255)
_INK: Colour = (26, 26, 32)
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
class _Form:
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
class _Label:
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
class _ProductSpec:
    form: _Form
    label: _Label


def keyed_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator for `key` under `seed`: same key, same numbers."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, *key]))
    )


def pick(rng: np.random.Generator, options):
    """One of `options`, uniformly at random."""
    return options[int(rng.integers(len(options)))]


def _distance(a: Colour, b: Colour) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


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
        if _distance(c, avoid) >= min_distance
        and (also_avoid is None or _distance(c, also_avoid) >= min_distance)
    ]
    return pick(rng, far or options)


def random_brand(rng: np.random.Generator) -> str:
    """A made-up, pronounceable brand word of at most nine letters."""
    word = ""
    for _ in range(int(rng.integers(2, 4))):
        word += pick(rng, _ONSETS) + pick(rng, _VOWELS)
    word = (word + pick(rng, _CODAS))[:9]
    return word if rng.random() < 0.6 else word.capitalize()


def _random_form(rng: np.random.Generator, shape: str) -> _Form:
    w_lo, w_hi, h_lo, h_hi = _SIZE_RANGES[shape]
    width = float(rng.uniform(w_lo, w_hi))
    height = width if shape == "compact" else float(rng.uniform(h_lo, h_hi))
    body = pick(rng, _BODY_COLOURS)
    return _Form(
        shape=shape,
        width=width,
        height=height,
        body=body,
        cap=_pick_far(rng, _CAP_COLOURS, body, 60),
        cap_style=pick(rng, _CAP_STYLES),
        gloss=float(rng.uniform(0.1, 0.55)),
        cap_ratio=float(rng.uniform(0.36, 0.56)),
        front_label=bool(rng.random() < 0.45),
    )


def _random_label(rng: np.random.Generator, shape: str, body: Colour) -> _Label:
    colour = _pick_far(rng, _LABEL_COLOURS, body, 90)
    accent = _pick_far(rng, _LABEL_COLOURS, colour, 110)
    pattern = pick(rng, _PATTERNS)
    panel = None
    if pattern != "solid" and rng.random() < 0.7:
        panel = _WHITE if rng.random() < 0.5 else colour
    return _Label(
        colour=colour,
        accent=accent,
        pattern=pattern,
        frequency=float(rng.uniform(3.0, 8.0)),
        angle=float(pick(rng, (0.0, 90.0, 45.0, -45.0))),
        duty=float(rng.uniform(0.25, 0.6)),
        panel=panel,
        brand=random_brand(rng),
        kind=pick(rng, _KINDS[shape]),
        white_rules=bool(rng.random() < 0.5),
    )


def _product_spec(product_index: int, seed: int) -> _ProductSpec:
    """The design of one product; odd products are variants of their partner.

    Even products cycle through the shapes, so any 14 consecutive products show
    all of them. An odd product is, at random, the next item of the same line
    (same package and brand, new label), a shade of it (same label, new body
    and cap colours) or unrelated.
    """
    rng = keyed_rng(seed, PRODUCT_STREAM, product_index)
    if product_index % 2 == 0:
        shape = _SHAPES[(product_index // 2) % len(_SHAPES)]
    else:
        shape = pick(rng, _SHAPES)
    form = _random_form(rng, shape)
    label = _random_label(rng, shape, form.body)
    if product_index % 2 == 0:
        return _ProductSpec(form, label)
    base = _product_spec(product_index - 1, seed)
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
        return _ProductSpec(base.form, label)
    if mode < 0.65:  # A shade: same print on a body of another colour.
        body = _pick_far(rng, _BODY_COLOURS, base.form.body, 140)
        cap = _pick_far(rng, _CAP_COLOURS, base.form.cap, 80, also_avoid=body)
        form = dataclasses.replace(base.form, body=body, cap=cap)
        return _ProductSpec(form, base.label)
    return _ProductSpec(form, label)


@functools.lru_cache(maxsize=32)
def load_font(size: int):
    """Pillow's default font at `size` pixels (cached)."""
    try:
        # A scalable font in Pillow >= 10.1 with FreeType; else the bitmap font.
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: `size` is not accepted.
        return ImageFont.load_default()


def _text_image(text: str, height_px: float, bold: bool) -> Image.Image:
    """An "L" image of `text` cropped to its ink, about `height_px` tall."""
    size = max(8, int(round(height_px * 1.3 / 4)) * 4)  # Few sizes to cache.
    font = load_font(size)
    scalable = isinstance(font, ImageFont.FreeTypeFont)
    stroke = max(1, size // 22) if bold and scalable else 0
    if stroke:
        left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    else:
        left, top, right, bottom = font.getbbox(text)
    image = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(image).text(
        (1 - left, 1 - top), text, fill=255, font=font, stroke_width=stroke
    )
    return image


class _Canvas:
    """A square RGBA canvas, premultiplied, in normalised coordinates [0, 1]."""

    def __init__(self, n: int):
        self.n = n
        centres = (np.arange(n, dtype=np.float32) + 0.5) / n
        self.x = centres[None, :]  # (1, n)
        self.y = centres[:, None]  # (n, 1)
        self.rgb = np.zeros((n, n, 3), np.float32)
        self.alpha = np.zeros((n, n), np.float32)

    def _mask(self, draw_fn) -> np.ndarray:
        image = Image.new("L", (self.n, self.n), 0)
        draw_fn(ImageDraw.Draw(image), self.n)
        return np.asarray(image, np.float32) / 255.0

    def rect(self, box, radius: float = 0.0) -> np.ndarray:
        x0, y0, x1, y1 = box
        radius = min(radius, (x1 - x0) / 2, (y1 - y0) / 2)

        def draw(d, n):
            xy = [x0 * n, y0 * n, x1 * n, y1 * n]
            if radius * n >= 1:
                d.rounded_rectangle(xy, radius=radius * n, fill=255)
            else:
                d.rectangle(xy, fill=255)

        return self._mask(draw)

    def ellipse(self, box) -> np.ndarray:
        return self._mask(
            lambda d, n: d.ellipse([v * n for v in box], fill=255)
        )

    def polygon(self, points) -> np.ndarray:
        return self._mask(
            lambda d, n: d.polygon(
                [(x * n, y * n) for x, y in points], fill=255
            )
        )

    def text(self, text: str, box, bold: bool = True) -> np.ndarray:
        """A mask of `text` fitted into `box`, turned 90 degrees in tall boxes."""
        x0, y0, x1, y1 = (v * self.n for v in box)
        box_w, box_h = x1 - x0, y1 - y0
        vertical = box_h > 1.6 * box_w
        length, thickness = (box_h, box_w) if vertical else (box_w, box_h)
        if length < 4 or thickness < 3:
            return np.zeros((self.n, self.n), np.float32)
        image = _text_image(text, thickness, bold)
        scale = min(length / image.width, thickness / image.height)
        image = image.resize(
            (
                max(1, round(image.width * scale)),
                max(1, round(image.height * scale)),
            ),
            Image.Resampling.LANCZOS,
        )
        if vertical:
            image = image.transpose(Image.Transpose.ROTATE_90)
        canvas = Image.new("L", (self.n, self.n), 0)
        canvas.paste(
            image,
            (
                round((x0 + x1 - image.width) / 2),
                round((y0 + y1 - image.height) / 2),
            ),
        )
        return np.asarray(canvas, np.float32) / 255.0

    def cylinder(self, x0: float, x1: float, gloss: float):
        """Diffuse and specular terms of a vertical cylinder lit from the left."""
        t = np.clip((self.x - (x0 + x1) / 2) / max((x1 - x0) / 2, 1e-6), -1, 1)
        diffuse = 0.62 + 0.38 * np.sqrt(1 - t * t)
        specular = gloss * np.exp(
            -(((t + 0.42) / 0.13) ** 2)
        ) + 0.4 * gloss * np.exp(-(((t - 0.8) / 0.07) ** 2))
        return diffuse[..., None], specular[..., None]  # (1, n, 1)

    def flat(self, y0: float, y1: float, level: float, gloss: float):
        """A plane face: `level` brightness, darker towards its bottom."""
        v = np.clip((self.y - y0) / max(y1 - y0, 1e-6), 0, 1)
        diffuse = level * (1.0 - 0.12 * v)
        specular = (
            gloss * 0.35 * np.exp(-(((self.x - 0.35) / 0.12) ** 2)) * (1 - v)
        )
        return diffuse[..., None], specular[..., None]  # (n, n, 1)

    def dome(self, cx: float, cy: float, radius: float, gloss: float):
        """Shading of a shallow round lid seen from the front."""
        dx, dy = (self.x - cx) / radius, (self.y - cy) / radius
        rr = np.clip(dx * dx + dy * dy, 0, 1)
        diffuse = 0.7 + 0.3 * np.sqrt(1 - rr)
        specular = gloss * np.exp(-((dx + 0.38) ** 2 + (dy + 0.38) ** 2) / 0.05)
        return diffuse[..., None], specular[..., None]  # (n, n, 1)

    def paint(self, mask: np.ndarray, colour, shading=None) -> None:
        """Composites an opaque `colour` ((3,) or (n, n, 3)) where `mask` is 1."""
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if not rows.size:
            return
        # Work inside the mask's bounding box only: most parts are small.
        ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

        def crop(a):
            a = np.asarray(a, np.float32)
            if a.ndim < 3:
                return a
            return a[
                ys if a.shape[0] > 1 else slice(None),
                xs if a.shape[1] > 1 else slice(None),
            ]

        colour = crop(colour)
        if shading is not None:
            diffuse, specular = shading
            colour = colour * crop(diffuse)
            colour = colour + (255.0 - colour) * crop(specular)
        m = mask[ys, xs]
        self.rgb[ys, xs] += (colour - self.rgb[ys, xs]) * m[..., None]
        self.alpha[ys, xs] += (1.0 - self.alpha[ys, xs]) * m


def frac(v):
    """The fractional part of `v`, in [0, 1)."""
    return v - np.floor(v)


def _pattern(label: _Label, u, v, aspect: float) -> np.ndarray:
    """Label print at label coordinates u (1, W) and v (H, 1) in [0, 1].

    Returns:
      `(H, W, 3)` or `(H, 1, 3)` float32 colours (patterns constant along u
      come back unbroadcast).
    """
    c1 = np.asarray(label.colour, np.float32)
    c2 = np.asarray(label.accent, np.float32)
    su = u * aspect  # Isotropic units: one unit is the label height.
    f = label.frequency
    if label.pattern == "stripes":
        a = np.deg2rad(label.angle)
        t = frac((su * np.cos(a) + v * np.sin(a)) * f) < label.duty
    elif label.pattern == "dots":
        du, dv = frac(su * f) - 0.5, frac(v * f) - 0.5
        t = du * du + dv * dv < 0.35 * label.duty
    elif label.pattern == "chevrons":
        zigzag = np.abs(frac(su * f) - 0.5)
        t = frac(v * f * 0.6 + zigzag) < label.duty
    elif label.pattern == "gradient":
        t = np.clip(v * 0.8 + u * 0.2, 0, 1)
    else:  # Solid, with accent rules at the top and bottom.
        t = (np.abs(v - 0.5) > 0.4) & (np.abs(v - 0.5) < 0.46)
    t = np.asarray(t, np.float32)[..., None]
    return c1 + (c2 - c1) * t


def _text_colour(background) -> Colour:
    return _WHITE if _luma(background) < 150 else _INK


def _draw_label(
    cv: _Canvas,
    label: _Label,
    body: Colour,
    box,
    region,
    shading,
    round_label: bool = False,
) -> None:
    """Pattern, name panel, brand and kind words, clipped to `region`."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    n = cv.n
    rows = slice(max(0, int(y0 * n)), min(n, int(np.ceil(y1 * n))))
    cols = slice(max(0, int(x0 * n)), min(n, int(np.ceil(x1 * n))))
    print_colours = np.zeros((n, n, 3), np.float32)
    print_colours[rows, cols] = _pattern(  # Only inside the box, for speed.
        label, (cv.x[:, cols] - x0) / w, (cv.y[rows] - y0) / h, w / h
    )
    cv.paint(region, print_colours, shading)
    vertical = h > 1.6 * w
    if label.pattern == "solid":
        ground = label.colour
    elif label.panel is not None:
        ground = label.panel
    else:
        ground = tuple((np.add(label.colour, label.accent) / 2).tolist())
    if round_label:
        panel = (x0, y0 + 0.32 * h, x1, y1 - 0.32 * h)
        brand_box = (x0 + 0.14 * w, y0 + 0.37 * h, x1 - 0.14 * w, y0 + 0.54 * h)
        kind_box = (x0 + 0.3 * w, y0 + 0.56 * h, x1 - 0.3 * w, y0 + 0.63 * h)
    elif vertical:
        panel = (x0 + 0.16 * w, y0 + 0.05 * h, x1 - 0.16 * w, y1 - 0.05 * h)
        brand_box = (x0 + 0.22 * w, y0 + 0.08 * h, x1 - 0.36 * w, y1 - 0.08 * h)
        kind_box = (x1 - 0.34 * w, y0 + 0.25 * h, x1 - 0.2 * w, y1 - 0.25 * h)
    else:
        panel = (x0 + 0.06 * w, y0 + 0.24 * h, x1 - 0.06 * w, y1 - 0.24 * h)
        brand_box = (x0 + 0.1 * w, y0 + 0.28 * h, x1 - 0.1 * w, y0 + 0.56 * h)
        kind_box = (x0 + 0.22 * w, y0 + 0.6 * h, x1 - 0.22 * w, y0 + 0.7 * h)
    if label.panel is not None and label.pattern != "solid":
        radius = 0.0 if round_label else 0.06 * min(w, h)
        cv.paint(cv.rect(panel, radius) * region, label.panel, shading)
    ink = _text_colour(ground)
    if ink == _INK and _luma(body) < 110 and _distance(body, ground) > 120:
        ink = body  # Dark brands print their name in the package colour.
    cv.paint(cv.text(label.brand, brand_box) * region, ink, shading)
    kind_ink = label.accent if _distance(label.accent, ground) > 140 else ink
    cv.paint(
        cv.text(label.kind, kind_box, bold=False) * region, kind_ink, shading
    )
    if label.white_rules:
        t = 0.012
        rules = np.maximum(
            cv.rect((x0, y0 + 0.06 * h, x1, y0 + 0.06 * h + t)),
            cv.rect((x0, y1 - 0.06 * h - t, x1, y1 - 0.06 * h)),
        )
        cv.paint(rules * region, _WHITE, shading)


def _label_box(form: _Form, x0, x1, y0, y1):
    """The label's box on a body spanning [x0, x1] x [y0, y1]."""
    if form.front_label:
        inset = 0.12 * (x1 - x0)
        return (
            x0 + inset,
            y0 + 0.1 * (y1 - y0),
            x1 - inset,
            y1 - 0.1 * (y1 - y0),
        ), 0.05 * (x1 - x0)
    return (x0, y0 + 0.14 * (y1 - y0), x1, y1 - 0.12 * (y1 - y0)), 0.0


def _ribs(cv: _Canvas, x0, x1, count: int) -> np.ndarray:
    return (frac((cv.x - x0) / (x1 - x0) * count) < 0.3).astype(np.float32)


def _draw_cap(cv: _Canvas, form: _Form, box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    shading = cv.cylinder(x0, x1, max(form.gloss, 0.35))
    cap = np.asarray(form.cap, np.float32)
    if form.cap_style == "dropper":
        collar = cv.rect((x0, y0 + 0.5 * h, x1, y1), 0.05 * w)
        cv.paint(collar, cap, shading)
        bulb = cv.rect((x0 + 0.2 * w, y0, x1 - 0.2 * w, y0 + 0.56 * h), 0.3 * w)
        cv.paint(
            bulb, (44, 40, 42), cv.cylinder(x0 + 0.2 * w, x1 - 0.2 * w, 0.3)
        )
        cv.paint(collar * _ribs(cv, x0, x1, 14), cap * 0.72, shading)
    elif form.cap_style == "dome":
        mask = np.maximum(
            cv.rect((x0, y0 + 0.35 * h, x1, y1), 0.04 * w),
            cv.ellipse((x0, y0, x1, y0 + 0.7 * h)),
        )
        cv.paint(mask, cap, shading)
    elif form.cap_style == "screw":
        mask = cv.rect(box, 0.08 * w)
        cv.paint(mask, cap, shading)
        cv.paint(mask * _ribs(cv, x0, x1, 16), cap * 0.7, shading)
    else:  # Flat: a plain cap with one bright band.
        mask = cv.rect(box, 0.05 * w)
        cv.paint(mask, cap, shading)
        band = cv.rect((x0, y1 - 0.22 * h, x1, y1 - 0.14 * h))
        cv.paint(band, np.minimum(cap * 1.3 + 40, 255), shading)


def _draw_bottle(cv: _Canvas, form: _Form, label: _Label) -> None:
    w, h = form.width, form.height
    x0, x1, top, bottom = 0.5 - w / 2, 0.5 + w / 2, 0.5 - h / 2, 0.5 + h / 2
    cap_w = w * form.cap_ratio
    cap_bottom = top + h * (0.2 if form.cap_style == "dropper" else 0.15)
    shoulder = h * 0.1
    body_top = cap_bottom + h * 0.05 + shoulder
    neck_w = cap_w * 0.78
    neck_box = (0.5 - neck_w / 2, cap_bottom - 0.01, 0.5 + neck_w / 2, body_top)
    cv.paint(
        cv.rect(neck_box),
        form.body,
        cv.cylinder(neck_box[0], neck_box[2], form.gloss),
    )
    body = np.maximum(
        cv.rect((x0, body_top, x1, bottom), 0.1 * w),
        cv.ellipse((x0, body_top - shoulder, x1, body_top + shoulder)),
    )
    shading = cv.cylinder(x0, x1, form.gloss)
    cv.paint(body, form.body, shading)
    box, radius = _label_box(form, x0, x1, body_top, bottom)
    _draw_label(cv, label, form.body, box, body * cv.rect(box, radius), shading)
    _draw_cap(cv, form, (0.5 - cap_w / 2, top, 0.5 + cap_w / 2, cap_bottom))


def _draw_pump(cv: _Canvas, form: _Form, label: _Label) -> None:
    w, h = form.width, form.height
    x0, x1, top, bottom = 0.5 - w / 2, 0.5 + w / 2, 0.5 - h / 2, 0.5 + h / 2
    head_h, stem_h, collar_h = 0.055 * h, 0.07 * h, 0.07 * h
    body_top = top + head_h + stem_h + collar_h
    cap = np.asarray(form.cap, np.float32)
    stem = (
        0.5 - 0.05 * w,
        body_top - collar_h - stem_h - 0.01,
        0.5 + 0.05 * w,
        body_top - collar_h + 0.01,
    )
    cv.paint(cv.rect(stem), cap * 0.9, cv.cylinder(stem[0], stem[2], 0.3))
    nozzle = (0.5 + 0.12 * w, top + 0.012 * h, 0.5 + 0.5 * w, top + 0.036 * h)
    cv.paint(cv.rect(nozzle, 0.01), cap, cv.flat(nozzle[1], nozzle[3], 1, 0.2))
    head = (0.5 - 0.2 * w, top, 0.5 + 0.2 * w, top + head_h)
    cv.paint(cv.rect(head, 0.03 * w), cap, cv.cylinder(head[0], head[2], 0.4))
    body = cv.rect((x0, body_top, x1, bottom), 0.2 * w)
    shading = cv.cylinder(x0, x1, form.gloss)
    cv.paint(body, form.body, shading)
    collar = (
        0.5 - 0.24 * w,
        body_top - collar_h,
        0.5 + 0.24 * w,
        body_top + 0.012,
    )
    collar_mask = cv.rect(collar, 0.02 * w)
    collar_shading = cv.cylinder(collar[0], collar[2], 0.4)
    cv.paint(collar_mask, cap, collar_shading)
    cv.paint(
        collar_mask * _ribs(cv, collar[0], collar[2], 12),
        cap * 0.72,
        collar_shading,
    )
    box, radius = _label_box(form, x0, x1, body_top + 0.08 * h, bottom)
    _draw_label(cv, label, form.body, box, body * cv.rect(box, radius), shading)


def _draw_jar(cv: _Canvas, form: _Form, label: _Label) -> None:
    w, h = form.width, form.height
    x0, x1, top, bottom = 0.5 - w / 2, 0.5 + w / 2, 0.5 - h / 2, 0.5 + h / 2
    lid_h = 0.27 * h
    body = cv.rect((x0, top + lid_h - 0.01, x1, bottom), 0.14 * w)
    shading = cv.cylinder(x0, x1, form.gloss)
    cv.paint(body, form.body, shading)
    box, radius = _label_box(form, x0, x1, top + lid_h, bottom)
    _draw_label(cv, label, form.body, box, body * cv.rect(box, radius), shading)
    lid = (x0 - 0.015, top, x1 + 0.015, top + lid_h)
    lid_mask = cv.rect(lid, 0.03 * w)
    lid_shading = cv.cylinder(lid[0], lid[2], max(form.gloss, 0.35))
    cap = np.asarray(form.cap, np.float32)
    cv.paint(lid_mask, cap, lid_shading)
    if form.cap_style in ("screw", "dropper"):
        cv.paint(
            lid_mask * _ribs(cv, lid[0], lid[2], 40), cap * 0.75, lid_shading
        )
    else:
        band = cv.rect((lid[0], top + 0.7 * lid_h, lid[2], top + 0.8 * lid_h))
        cv.paint(band, np.minimum(cap * 1.25 + 30, 255), lid_shading)


def _draw_tube(cv: _Canvas, form: _Form, label: _Label) -> None:
    w, h = form.width, form.height
    top, bottom = 0.5 - h / 2, 0.5 + h / 2
    cap_h, crimp_h = 0.11 * h, 0.05 * h
    cap_w = 0.62 * w
    shoulder_y = bottom - cap_h
    body = cv.polygon(
        [
            (0.5 - 0.3 * w, shoulder_y + 0.01),
            (0.5 - 0.5 * w, shoulder_y - 0.09 * h),
            (0.5 - 0.56 * w, top + crimp_h),
            (0.5 + 0.56 * w, top + crimp_h),
            (0.5 + 0.5 * w, shoulder_y - 0.09 * h),
            (0.5 + 0.3 * w, shoulder_y + 0.01),
        ]
    )
    shading = cv.cylinder(0.5 - 0.54 * w, 0.5 + 0.54 * w, form.gloss)
    cv.paint(body, form.body, shading)
    box = (
        0.5 - 0.56 * w,
        top + crimp_h + 0.1 * h,
        0.5 + 0.56 * w,
        shoulder_y - 0.13 * h,
    )
    _draw_label(cv, label, form.body, box, body * cv.rect(box), shading)
    crimp = (0.5 - 0.58 * w, top, 0.5 + 0.58 * w, top + crimp_h + 0.004)
    crimp_mask = cv.rect(crimp)
    body_colour = np.asarray(form.body, np.float32)
    crimp_shading = cv.flat(crimp[1], crimp[3], 0.9, 0.1)
    cv.paint(crimp_mask, body_colour, crimp_shading)
    ridges = (frac((cv.y - top) / crimp_h * 5) < 0.35).astype(np.float32)
    cv.paint(crimp_mask * ridges, body_colour * 0.8, crimp_shading)
    cap = (0.5 - cap_w / 2, shoulder_y, 0.5 + cap_w / 2, bottom)
    cap_shading = cv.cylinder(cap[0], cap[2], 0.4)
    cv.paint(cv.rect(cap, 0.04 * w), form.cap, cap_shading)
    seam = cv.rect(
        (cap[0], shoulder_y + 0.3 * cap_h, cap[2], shoulder_y + 0.36 * cap_h)
    )
    cv.paint(seam, np.asarray(form.cap, np.float32) * 0.6, cap_shading)


def _draw_box(cv: _Canvas, form: _Form, label: _Label) -> None:
    w, h = form.width, form.height
    x0, top, bottom = 0.5 - w / 2, 0.5 - h / 2, 0.5 + h / 2
    front_w, dx = 0.78 * w, 0.22 * w
    dy = 0.45 * dx
    x1 = x0 + front_w
    body = np.asarray(form.body, np.float32)
    side = cv.polygon(
        [(x1, top + dy), (x1 + dx, top), (x1 + dx, bottom - dy), (x1, bottom)]
    )
    cv.paint(side, body, cv.flat(top, bottom, 0.7, 0.0))
    lid = cv.polygon(
        [(x0, top + dy), (x0 + dx, top), (x1 + dx, top), (x1, top + dy)]
    )
    cv.paint(lid, body, cv.flat(top, top + dy, 1.0, 0.3))
    front = cv.rect((x0, top + dy, x1, bottom))
    shading = cv.flat(top + dy, bottom, 0.97, form.gloss)
    cv.paint(front, body, shading)
    face_h = bottom - top - dy
    box = (
        x0 + 0.08 * front_w,
        top + dy + 0.12 * face_h,
        x1 - 0.08 * front_w,
        bottom - 0.18 * face_h,
    )
    _draw_label(
        cv, label, form.body, box, cv.rect(box, 0.02 * front_w), shading
    )
    band = (x0, bottom - 0.1 * face_h, x1, bottom - 0.05 * face_h)
    cv.paint(cv.rect(band), form.cap, shading)
    side_band = cv.polygon(
        [
            (x1, bottom - 0.1 * face_h),
            (x1 + dx, bottom - 0.1 * face_h - dy),
            (x1 + dx, bottom - 0.05 * face_h - dy),
            (x1, bottom - 0.05 * face_h),
        ]
    )
    cv.paint(side_band, form.cap, cv.flat(top, bottom, 0.7, 0.0))


def _draw_lipstick(cv: _Canvas, form: _Form, label: _Label) -> None:
    w, h = form.width, form.height
    x0, x1, top, bottom = 0.5 - w / 2, 0.5 + w / 2, 0.5 - h / 2, 0.5 + h / 2
    metal = np.asarray(form.cap, np.float32)
    base_top = bottom - 0.52 * h
    ring_top = base_top - 0.035 * h
    sleeve_top = ring_top - 0.15 * h
    xl, xr = x0 + 0.2 * w, x1 - 0.2 * w
    bullet = cv.polygon(
        [
            (xl, sleeve_top + 0.01),
            (xl, top + 0.12 * h),
            (xr - 0.1 * w, top),
            (xr, top + 0.02 * h),
            (xr, sleeve_top + 0.01),
        ]
    )
    cv.paint(bullet, form.body, cv.cylinder(xl, xr, max(form.gloss, 0.3)))
    sleeve = (x0 + 0.1 * w, sleeve_top, x1 - 0.1 * w, ring_top + 0.005)
    cv.paint(
        cv.rect(sleeve),
        np.minimum(metal * 1.1 + 10, 255),
        cv.cylinder(sleeve[0], sleeve[2], 0.6),
    )
    ring = (x0 - 0.01, ring_top, x1 + 0.01, base_top + 0.005)
    cv.paint(
        cv.rect(ring, 0.01),
        np.asarray(label.accent, np.float32),
        cv.cylinder(ring[0], ring[2], 0.6),
    )
    base = cv.rect((x0, base_top, x1, bottom), 0.04 * w)
    shading = cv.cylinder(x0, x1, 0.55)
    cv.paint(base, metal, shading)
    box = (
        x0,
        base_top + 0.1 * (bottom - base_top),
        x1,
        bottom - 0.1 * (bottom - base_top),
    )
    _draw_label(cv, label, form.body, box, base * cv.rect(box), shading)


def _draw_compact(cv: _Canvas, form: _Form, label: _Label) -> None:
    d = form.width
    cx, cy = 0.5, 0.52
    r = d / 2
    cap = np.asarray(form.cap, np.float32)
    hinge = (cx - 0.1 * d, cy - r - 0.035, cx + 0.1 * d, cy - r + 0.03)
    cv.paint(cv.rect(hinge, 0.01), cap, cv.cylinder(hinge[0], hinge[2], 0.5))
    cv.paint(
        cv.ellipse((cx - r, cy - r, cx + r, cy + r)),
        cap,
        cv.dome(cx, cy, r, 0.5),
    )
    shading = cv.dome(cx, cy, r, form.gloss)
    inner = r * 0.92
    cv.paint(
        cv.ellipse((cx - inner, cy - inner, cx + inner, cy + inner)),
        form.body,
        shading,
    )
    ring = r * 0.68
    if label.white_rules:
        cv.paint(
            cv.ellipse(
                (
                    cx - ring - 0.012,
                    cy - ring - 0.012,
                    cx + ring + 0.012,
                    cy + ring + 0.012,
                )
            ),
            _WHITE,
            shading,
        )
    box = (cx - ring, cy - ring, cx + ring, cy + ring)
    plain = dataclasses.replace(label, white_rules=False)
    _draw_label(
        cv, plain, form.body, box, cv.ellipse(box), shading, round_label=True
    )


_DRAWERS = {
    "bottle": _draw_bottle,
    "jar": _draw_jar,
    "tube": _draw_tube,
    "box": _draw_box,
    "lipstick": _draw_lipstick,
    "compact": _draw_compact,
    "pump": _draw_pump,
}


def _render_layer(spec: _ProductSpec, size: int) -> np.ndarray:
    """Draws a product alone: (size, size, 4) uint8, RGB premultiplied by alpha.

    Drawn at 2-4x and box-filtered down, which antialiases every edge.
    """
    ss = max(2, -(-256 // size))
    cv = _Canvas(size * ss)
    _DRAWERS[spec.form.shape](cv, spec.form, spec.label)

    def box_filter(a):  # Summing strided views: much faster than reshape+mean.
        return (
            sum(a[i::ss, j::ss] for i in range(ss) for j in range(ss)) / ss**2
        )

    alpha = box_filter(cv.alpha) * 255.0
    layer = np.empty((size, size, 4), np.uint8)
    layer[..., :3] = np.round(np.clip(box_filter(cv.rgb), 0, alpha[..., None]))
    layer[..., 3] = np.round(alpha)
    return layer


def _crop_to_alpha(layer: np.ndarray) -> np.ndarray:
    """A layer cropped to its alpha's bounding box: a sprite, (h, w, 4)."""
    rows = np.flatnonzero(layer[..., 3].any(axis=1))
    cols = np.flatnonzero(layer[..., 3].any(axis=0))
    return layer[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


@functools.lru_cache(maxsize=64)
def _product_layer(product_index: int, size: int, seed: int) -> np.ndarray:
    """Catalogue product `product_index` alone, cached: queries reuse it."""
    layer = _render_layer(_product_spec(product_index, seed), size)
    layer.setflags(write=False)
    return layer


@functools.lru_cache(maxsize=64)
def product_sprite(product_index: int, size: int, seed: int) -> np.ndarray:
    """Catalogue product `product_index` cut out: (h, w, 4), premultiplied."""
    return _crop_to_alpha(_product_layer(product_index, size, seed))


def stranger_sprite(rng: np.random.Generator, size: int) -> np.ndarray:
    """A package that is in no catalogue: other goods on the shelf.

    Drawn at half resolution (it is never large in a scene) with a design
    from `rng`, which no catalogue product shares.
    """
    shape = pick(rng, _SHAPES)
    form = _random_form(rng, shape)
    spec = _ProductSpec(form, _random_label(rng, shape, form.body))
    return _crop_to_alpha(_render_layer(spec, max(16, size // 2)))


def check_product_index(
    product_index: int, num_products: int | None = None
) -> None:
    """Raises ValueError unless the index is >= 0 and below `num_products`."""
    if num_products is None:
        if product_index < 0:
            raise ValueError(
                f"product_index={product_index} must be non-negative."
            )
    elif not 0 <= product_index < num_products:
        raise ValueError(
            f"product_index={product_index} is out of range "
            f"[0, {num_products}) for num_products={num_products}."
        )


def check_size_and_seed(size: int, seed: int) -> None:
    """Raises ValueError on a size below 16 or a negative seed."""
    if size < 16:
        raise ValueError(f"size={size} is too small; use at least 16 pixels.")
    if seed < 0:
        raise ValueError(f"seed={seed} must be non-negative.")


def render_product(
    product_index: int, size: int = 256, seed: int = 0
) -> np.ndarray:
    """Renders catalogue image `product_index`: the product on pure white.

    Args:
      product_index: which product, >= 0; the same index always draws the same
        product, whatever the catalogue size.
      size: output height and width in pixels, >= 16.
      seed: selects a different catalogue, >= 0.

    Returns:
      `(size, size, 3)` uint8; the border is exactly 255.

    Raises:
      ValueError: on a negative index or seed, or a size below 16.
    """
    check_product_index(product_index)
    check_size_and_seed(size, seed)
    layer = _product_layer(product_index, size, seed).astype(np.int16)
    return (layer[..., :3] + (255 - layer[..., 3:])).astype(np.uint8)
