"""A synthetic catalogue the project generates itself: studio shots and queries.

beau_tf learns from clean catalogue images (one product on white) and must find
those products in shoppers' photos. This module generates a deterministic
stand-in for such data, so the demo and the tests need no download:

- `render_product` draws a cosmetics or grocery package (bottle, jar, tube,
  box, lipstick, compact, pump) on pure white: a shaded body, a cap, a
  patterned label with a brand word. Some print is white, so a mask must keep
  white pixels inside the product. Products come in pairs that may share a
  shape and colours (a product line) or a label (a shade range), so retrieval
  is not solved by colour alone.
- `render_query` photographs the same product "in the wild": tilted and
  warped, standing on a table or held in a hand, among clutter and other
  catalogue products, under a colour cast, vignetting and a shadow, partly
  occluded, blurred, noisy and JPEG-compressed. It is written independently
  of `beau_tf.data.augment`, so evaluation on these queries does not score
  the training augmentation against itself.
- `render_background` draws the same kind of scene with no catalogue product.
- `write_synthetic_catalog` writes all three with CSV indexes.

Every image is a pure function of its indices and `seed`: randomness comes
from `numpy.random.Generator(PCG64)` keyed by (seed, stream, indices).

Its command line is `beau_tf.data.make_synthetic`.
"""

import csv
import dataclasses
import functools
import io
import json
import math
import os
import shutil
import tempfile

from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFilter
from PIL import ImageFont

Colour = tuple[int, int, int]

_GENERATOR = "beau_tf.data.synthetic"
# Bump when the rendering changes, so stale catalogues on disk are regenerated.
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_CATALOG_DIR = "catalog"
_QUERIES_DIR = "queries"
_BACKGROUNDS_DIR = "backgrounds"
_CATALOG_CSV, _QUERIES_CSV = "catalog.csv", "queries.csv"
_OUR_ENTRIES = frozenset(
    {
        _MANIFEST,
        _CATALOG_DIR,
        _QUERIES_DIR,
        _BACKGROUNDS_DIR,
        _CATALOG_CSV,
        _QUERIES_CSV,
    }
)
_JPEG_QUALITY = 92

# Independent random streams: an image's randomness is keyed by
# (seed, stream, indices), so no image depends on how many others are drawn.
_PRODUCT_STREAM, _QUERY_STREAM, _BACKGROUND_STREAM = 1, 2, 3

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
_SKIN_TONES: tuple[Colour, ...] = (
    (241, 194, 167),
    (224, 172, 140),
    (198, 134, 103),
    (161, 102, 72),
    (112, 70, 50),
)
_WALL_COLOURS: tuple[Colour, ...] = (
    (232, 226, 214),
    (205, 208, 212),
    (180, 196, 210),
    (222, 210, 190),
    (150, 150, 150),
    (96, 90, 84),
    (236, 236, 230),
    (200, 220, 205),
    (62, 66, 74),
    (214, 190, 170),
    (240, 222, 190),
    (170, 150, 170),
)
_SURFACE_COLOURS: tuple[Colour, ...] = (
    (178, 130, 90),
    (120, 86, 60),
    (220, 220, 214),
    (232, 232, 236),
    (90, 90, 96),
    (204, 180, 146),
    (150, 160, 172),
    (60, 48, 40),
)
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
class SyntheticCatalog:
    """Where `write_synthetic_catalog` put its files.

    Attributes:
      catalog_dir: `<out>/catalog`, one `<item_id>.png` per product on white.
      catalog_csv: `<out>/catalog.csv`, columns `item_id,path`, paths relative
        to the CSV.
      queries_csv: `<out>/queries.csv`, columns `path,item_id`, paths relative
        to the CSV (`queries/q0000.jpg`, ...; names do not leak the item id).
      backgrounds_dir: `<out>/backgrounds`, `*.jpg` scenes without any
        catalogue product, usable as `--background_dir`.
      num_products: number of catalogue images.
      num_queries: number of query images.
    """

    catalog_dir: str
    catalog_csv: str
    queries_csv: str
    backgrounds_dir: str
    num_products: int
    num_queries: int


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


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, *key]))
    )


def _pick(rng: np.random.Generator, options):
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
    return _pick(rng, far or options)


def _brand(rng: np.random.Generator) -> str:
    word = ""
    for _ in range(int(rng.integers(2, 4))):
        word += _pick(rng, _ONSETS) + _pick(rng, _VOWELS)
    word = (word + _pick(rng, _CODAS))[:9]
    return word if rng.random() < 0.6 else word.capitalize()


def _random_form(rng: np.random.Generator, shape: str) -> _Form:
    w_lo, w_hi, h_lo, h_hi = _SIZE_RANGES[shape]
    width = float(rng.uniform(w_lo, w_hi))
    height = width if shape == "compact" else float(rng.uniform(h_lo, h_hi))
    body = _pick(rng, _BODY_COLOURS)
    return _Form(
        shape=shape,
        width=width,
        height=height,
        body=body,
        cap=_pick_far(rng, _CAP_COLOURS, body, 60),
        cap_style=_pick(rng, _CAP_STYLES),
        gloss=float(rng.uniform(0.1, 0.55)),
        cap_ratio=float(rng.uniform(0.36, 0.56)),
        front_label=bool(rng.random() < 0.45),
    )


def _random_label(rng: np.random.Generator, shape: str, body: Colour) -> _Label:
    colour = _pick_far(rng, _LABEL_COLOURS, body, 90)
    accent = _pick_far(rng, _LABEL_COLOURS, colour, 110)
    pattern = _pick(rng, _PATTERNS)
    panel = None
    if pattern != "solid" and rng.random() < 0.7:
        panel = _WHITE if rng.random() < 0.5 else colour
    return _Label(
        colour=colour,
        accent=accent,
        pattern=pattern,
        frequency=float(rng.uniform(3.0, 8.0)),
        angle=float(_pick(rng, (0.0, 90.0, 45.0, -45.0))),
        duty=float(rng.uniform(0.25, 0.6)),
        panel=panel,
        brand=_brand(rng),
        kind=_pick(rng, _KINDS[shape]),
        white_rules=bool(rng.random() < 0.5),
    )


def _product_spec(product_index: int, seed: int) -> _ProductSpec:
    """The design of one product; odd products are variants of their partner.

    Even products cycle through the shapes, so any 14 consecutive products show
    all of them. An odd product is, at random, the next item of the same line
    (same package and brand, new label), a shade of it (same label, new body
    and cap colours) or unrelated.
    """
    rng = _rng(seed, _PRODUCT_STREAM, product_index)
    if product_index % 2 == 0:
        shape = _SHAPES[(product_index // 2) % len(_SHAPES)]
    else:
        shape = _pick(rng, _SHAPES)
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
def _font(size: int):
    try:
        # A scalable font in Pillow >= 10.1 with FreeType; else the bitmap font.
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: `size` is not accepted.
        return ImageFont.load_default()


def _text_image(text: str, height_px: float, bold: bool) -> Image.Image:
    """An "L" image of `text` cropped to its ink, about `height_px` tall."""
    size = max(8, int(round(height_px * 1.3 / 4)) * 4)  # Few sizes to cache.
    font = _font(size)
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


def _frac(v):
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
        t = _frac((su * np.cos(a) + v * np.sin(a)) * f) < label.duty
    elif label.pattern == "dots":
        du, dv = _frac(su * f) - 0.5, _frac(v * f) - 0.5
        t = du * du + dv * dv < 0.35 * label.duty
    elif label.pattern == "chevrons":
        zigzag = np.abs(_frac(su * f) - 0.5)
        t = _frac(v * f * 0.6 + zigzag) < label.duty
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
    return (_frac((cv.x - x0) / (x1 - x0) * count) < 0.3).astype(np.float32)


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
    ridges = (_frac((cv.y - top) / crimp_h * 5) < 0.35).astype(np.float32)
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
def _product_sprite(product_index: int, size: int, seed: int) -> np.ndarray:
    return _crop_to_alpha(_product_layer(product_index, size, seed))


def _stranger_sprite(rng: np.random.Generator, size: int) -> np.ndarray:
    """A package that is in no catalogue: other goods on the shelf.

    Drawn at half resolution (it is never large in a scene) with a design
    from `rng`, which no catalogue product shares.
    """
    shape = _pick(rng, _SHAPES)
    form = _random_form(rng, shape)
    spec = _ProductSpec(form, _random_label(rng, shape, form.body))
    return _crop_to_alpha(_render_layer(spec, max(16, size // 2)))


def _check_product_index(
    product_index: int, num_products: int | None = None
) -> None:
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


def _check_size_and_seed(size: int, seed: int) -> None:
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
    _check_product_index(product_index)
    _check_size_and_seed(size, seed)
    layer = _product_layer(product_index, size, seed).astype(np.int16)
    return (layer[..., :3] + (255 - layer[..., 3:])).astype(np.uint8)


def _grid(n: int):
    c = (np.arange(n, dtype=np.float32) + 0.5) / n
    return c[None, :, None], c[:, None, None]  # x (1, n, 1), y (n, 1, 1)


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], (n, n, 1)."""
    coarse = rng.integers(0, 256, (cells, cells), dtype=np.uint8)
    fine = Image.fromarray(coarse).resize((n, n), Image.Resampling.BICUBIC)
    return (np.asarray(fine, np.float32) / 255.0)[..., None]


def _random_colour(rng: np.random.Generator, mute_towards, amount) -> tuple:
    c = rng.integers(0, 256, 3).astype(np.float32)
    return tuple(int(v) for v in c + (np.asarray(mute_towards) - c) * amount)


@dataclasses.dataclass(frozen=True)
class _Scene:
    image: np.ndarray  # (n, n, 3) float32 in [0, 255].
    horizon: float  # Where the table meets the wall, as a fraction of n.
    lip: tuple | None  # A shelf's front edge: (top, height, colour, tags).


def _scene(rng: np.random.Generator, n: int) -> _Scene:
    """A wall and a table or shelf, with clutter, before any product."""
    x, y = _grid(n)
    wall = np.asarray(_pick(rng, _WALL_COLOURS), np.float32)
    wall *= rng.uniform(0.85, 1.1)
    wall_low = wall * rng.uniform(0.7, 1.05)
    image = np.broadcast_to(wall + (wall_low - wall) * y, (n, n, 3)).copy()
    texture = int(rng.integers(4))
    period = rng.uniform(0.06, 0.2)
    if texture == 1:  # Tiles with darker grout.
        grout = (_frac(x / period) < 0.05) | (_frac(y / period) < 0.05)
        image *= np.where(grout, np.float32(0.8), np.float32(1.0))
    elif texture == 2:  # Striped wallpaper.
        image *= np.where(
            _frac(x / period) < 0.5, np.float32(0.92), np.float32(1.0)
        )
    elif texture == 3:  # A woven fabric.
        image *= 1 + 0.05 * np.sin(x * n * 2.1) * np.sin(y * n * 2.1)
    image *= 0.9 + 0.2 * _smooth_noise(rng, n, int(rng.integers(3, 9)))
    horizon = float(rng.uniform(0.42, 0.78))
    surface = np.asarray(_pick(rng, _SURFACE_COLOURS), np.float32)
    grain = np.sin(
        2 * np.pi * (y * rng.uniform(15, 50) + 2.5 * _smooth_noise(rng, n, 6))
    )
    depth = np.clip((y - horizon) / (1 - horizon), 0, 1)
    table = surface * (1 + 0.06 * grain) * (0.8 + 0.3 * depth)
    image = np.where(y > horizon, table, image)
    image *= 1 - 0.3 * np.exp(-(((y - horizon) * 60) ** 2))  # Contact shadow.
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil, "RGBA")
    if rng.random() < 0.4:  # A higher shelf of out-of-focus goods behind.
        board = (horizon - rng.uniform(0.12, 0.3)) * n
        left = rng.uniform(-0.1, 0.05) * n
        while left < n:
            item_w = rng.uniform(0.04, 0.12) * n
            item_h = rng.uniform(0.08, 0.3) * n
            draw.rectangle(
                [left, board - item_h, left + item_w, board],
                fill=_random_colour(rng, wall, 0.3) + (255,),
            )
            left += item_w + rng.uniform(0.0, 0.03) * n
        draw.rectangle(
            [0, board, n, board + 0.03 * n],
            fill=_random_colour(rng, (200, 200, 200), 0.7) + (255,),
        )
    for _ in range(int(rng.integers(3, 10))):
        colour = _random_colour(rng, wall, rng.uniform(0, 0.5))
        fill = colour + (int(rng.integers(140, 256)),)
        cx, cy = rng.uniform(-0.1, 1.1, 2) * n
        r = rng.uniform(0.04, 0.28) * n
        kind = int(rng.integers(5))
        if kind == 0:
            draw.ellipse(
                [cx - r, cy - r * rng.uniform(0.4, 1), cx + r, cy + r],
                fill=fill,
            )
        elif kind == 1:
            draw.rounded_rectangle(
                [
                    cx - r,
                    cy - r * rng.uniform(0.3, 1.5),
                    cx + r * rng.uniform(0.3, 1),
                    cy + r,
                ],
                radius=r * rng.uniform(0, 0.3),
                fill=fill,
            )
        elif kind == 2:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            draw.polygon(
                [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles],
                fill=fill,
            )
        elif kind == 3:
            draw.line(
                [cx - r, cy - r * rng.uniform(-1, 1), cx + r, cy + r],
                fill=fill,
                width=max(1, int(r * rng.uniform(0.05, 0.2))),
            )
        else:  # Stray print: a poster or another brand's name.
            font = _font(max(8, int(r * 0.5 / 4) * 4))
            draw.text((cx - r, cy), _brand(rng), fill=fill, font=font)
    radius = rng.uniform(0.0, 2.5) * n / 256  # Depth of field.
    if radius > 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(radius))
    lip = None
    if rng.random() < 0.4:
        lip_top = rng.uniform(0.86, 0.95)
        lip_h = rng.uniform(0.04, 0.08)
        colour = _pick(
            rng,
            (
                (235, 235, 235),
                (120, 120, 124),
                (30, 30, 32),
                (160, 40, 40),
                (150, 110, 70),
            ),
        )
        tags = [
            (rng.uniform(0, 0.9), rng.uniform(0.08, 0.16))
            for _ in range(int(rng.integers(0, 3)))
        ]
        lip = (lip_top, lip_h, colour, tags)
    return _Scene(np.asarray(pil, np.float32), horizon, lip)


def _draw_lip(image: np.ndarray, lip) -> np.ndarray:
    """The shelf's front edge, in front of the products; price tags on it."""
    n = image.shape[0]
    top, height, colour, tags = lip
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    draw.rectangle([0, top * n, n, (top + height) * n], fill=colour)
    draw.line(
        [0, top * n, n, top * n],
        fill=tuple(min(255, c + 40) for c in colour),
        width=max(1, n // 128),
    )
    for left, width in tags:
        box = [
            left * n,
            (top + 0.15 * height) * n,
            (left + width) * n,
            (top + 0.95 * height) * n,
        ]
        draw.rectangle(box, fill=(250, 250, 240))
        inset = 0.15 * (box[3] - box[1])  # The price, as a dark bar.
        draw.rectangle(
            [
                box[0] + inset,
                box[1] + inset,
                box[0] + (box[2] - box[0]) * 0.6,
                (box[1] + box[3]) / 2,
            ],
            fill=(30, 30, 30),
        )
    return np.asarray(pil, np.float32)


def _perspective_coefficients(dst, src) -> tuple:
    """PIL PERSPECTIVE coefficients mapping output points `dst` to `src`."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return tuple(
        np.linalg.solve(
            np.asarray(rows, np.float64), np.asarray(rhs, np.float64)
        )
    )


@dataclasses.dataclass(frozen=True)
class _Placed:
    rgb: np.ndarray  # (n, n, 3) float32, premultiplied.
    alpha: np.ndarray  # (n, n) float32 in [0, 1].
    centre: tuple[float, float]
    width: float
    height: float
    angle: float


def _place(
    crop: np.ndarray,
    n: int,
    centre,
    longest: float,
    angle: float,
    rng: np.random.Generator,
    skew: float,
) -> _Placed:
    """Warps a product sprite into an n x n frame: scaled, turned, in perspective.

    Args:
      crop: `(h, w, 4)` premultiplied product sprite.
      n: frame size.
      centre: (x, y) of the product in the frame, pixels.
      longest: the product's longer side in the frame, pixels.
      angle: in-plane rotation, degrees counter-clockwise.
      rng: draws the viewpoint (yaw, pitch, corner jitter).
      skew: strength of the viewpoint change, 0 for a frontal view.

    Returns:
      The warped product.
    """
    ch, cw = crop.shape[:2]
    scale = longest / max(cw, ch)
    w, h = cw * scale, ch * scale
    # "RGBa" is PIL's premultiplied mode: it resamples the values as they are.
    sprite = Image.frombytes(
        "RGBa", (cw, ch), np.ascontiguousarray(crop).tobytes()
    )
    if scale < 0.8:  # Box-filter first; a bilinear warp alone would alias.
        sprite = sprite.resize(
            (max(1, round(cw * scale)), max(1, round(ch * scale))),
            Image.Resampling.BOX,
        )
    corners = np.array(
        [[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]
    )
    yaw = rng.uniform(0, 0.25) * skew * rng.choice([-1, 1])
    far = [1, 2] if yaw > 0 else [0, 3]  # The side turned away shrinks.
    corners[far, 1] *= 1 - abs(yaw)
    corners[:, 0] *= 1 - 0.5 * abs(yaw)
    pitch = rng.uniform(-0.15, 0.15) * skew
    corners[[0, 1] if pitch > 0 else [2, 3], 0] *= 1 - abs(pitch)
    corners += rng.normal(0, 0.03 * skew * max(w, h), (4, 2))
    a = np.deg2rad(angle)
    rotation = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    dst = corners @ rotation.T + np.asarray(centre)
    rgb = np.zeros((n, n, 3), np.float32)
    alpha = np.zeros((n, n), np.float32)
    # Warp only into the bounding box of the destination quadrilateral.
    x0, y0 = np.maximum(np.floor(dst.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(dst.max(axis=0)).astype(int) + 1, n)
    if x1 > x0 and y1 > y0:
        src = [
            (0, 0),
            (sprite.width, 0),
            (sprite.width, sprite.height),
            (0, sprite.height),
        ]
        coefficients = _perspective_coefficients(dst - (x0, y0), src)
        warped = np.asarray(
            sprite.transform(
                (int(x1 - x0), int(y1 - y0)),
                Image.Transform.PERSPECTIVE,
                coefficients,
                Image.Resampling.BILINEAR,
            ),
            np.float32,
        )
        rgb[y0:y1, x0:x1] = warped[..., :3]
        alpha[y0:y1, x0:x1] = warped[..., 3] / 255.0
    return _Placed(
        rgb, alpha, (float(centre[0]), float(centre[1])), w, h, angle
    )


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(a)
    n_y, n_x = a.shape[:2]
    out[max(dy, 0) : n_y + min(dy, 0), max(dx, 0) : n_x + min(dx, 0)] = a[
        max(-dy, 0) : n_y - max(dy, 0), max(-dx, 0) : n_x - max(dx, 0)
    ]
    return out


def _cast_shadow(
    image: np.ndarray, placed: _Placed, rng, strength: float, offset: float
) -> np.ndarray:
    n = image.shape[0]
    dx = round(rng.uniform(-1, 1) * offset * placed.width)
    dy = round(rng.uniform(0.0, 0.6) * offset * placed.height)
    # A soft shadow needs no detail: blur it at a quarter of the resolution.
    small = max(4, n // 4)
    shadow = (
        Image.fromarray((_shift(placed.alpha, dx, dy) * 255).astype(np.uint8))
        .resize((small, small), Image.Resampling.BOX)
        .filter(ImageFilter.GaussianBlur(rng.uniform(0.01, 0.04) * small))
        .resize((n, n), Image.Resampling.BILINEAR)
    )
    return image * (
        1 - strength / 255.0 * np.asarray(shadow, np.float32)[..., None]
    )


def _composite(image: np.ndarray, placed: _Placed) -> np.ndarray:
    return image * (1 - placed.alpha[..., None]) + placed.rgb


def _hand_layers(target: _Placed, rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A hand holding the product: (behind, in front) RGBA float layers.

    Behind it, the palm and the arm running out of the frame; in front, the
    fingers wrapping round from one side and the thumb from the other. Drawn
    upright, then turned with the product.
    """
    skin = np.asarray(_pick(rng, _SKIN_TONES), np.float32)
    fill = tuple(int(v) for v in skin) + (255,)
    shadow_side = tuple(int(v) for v in skin * 0.82) + (255,)
    outline = tuple(int(v) for v in skin * 0.7) + (255,)
    line_width = max(1, n // 200)
    cx, cy = target.centre
    w, h = target.width, target.height
    side = float(rng.choice([-1, 1]))
    finger = float(np.clip(0.05 * n * rng.uniform(0.85, 1.15), 3, 0.25 * h))
    top = cy + rng.uniform(-0.2, 0.15) * h
    count = int(rng.integers(3, 5))
    bottom = top + count * finger * 1.02
    back = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    draw = ImageDraw.Draw(back)
    palm = (cx + side * 0.3 * w, (top + bottom) / 2)
    elbow = (palm[0] + side * 1.2 * n, palm[1] + rng.uniform(0.6, 1.4) * n)
    draw.line([palm, elbow], fill=shadow_side, width=round(3.6 * finger))
    draw.ellipse(
        [
            palm[0] - 0.5 * w - 2 * finger,
            top - finger,
            palm[0] + 0.5 * w + 2 * finger,
            bottom + finger,
        ],
        fill=shadow_side,
    )
    front = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    draw = ImageDraw.Draw(front)
    edge = cx + side * w / 2
    reach = w * rng.uniform(0.25, 0.5) + finger
    y = top
    for k in range(count):
        length = reach * (1 - 0.15 * abs(k - (count - 1) / 2))
        xs = sorted([edge - side * length, edge + side * 1.5 * finger])
        draw.rounded_rectangle(
            [xs[0], y, xs[1], y + finger],
            radius=finger / 2,
            fill=fill,
            outline=outline,
            width=line_width,
        )
        y += finger * 1.02
    thumb_edge = cx - side * w / 2
    xs = sorted([thumb_edge - side * finger, thumb_edge + side * 0.3 * w])
    draw.rounded_rectangle(
        [xs[0], top - 0.2 * finger, xs[1], top + finger],
        radius=finger / 2,
        fill=fill,
        outline=outline,
        width=line_width,
    )
    layers = []
    for layer in (back, front):
        layer = layer.rotate(
            target.angle, resample=Image.Resampling.BILINEAR, center=(cx, cy)
        )
        layer = layer.filter(ImageFilter.GaussianBlur(0.6 * n / 256))
        layers.append(np.asarray(layer, np.float32))
    return layers[0], layers[1]


def _over(image: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """`rgba` (straight alpha, 0-255) composited over `image`."""
    alpha = rgba[..., 3:] / 255.0
    return image * (1 - alpha) + rgba[..., :3] * alpha


def _draw_blob(image: np.ndarray, target: _Placed, rng) -> np.ndarray:
    """An out-of-focus foreground object over one corner of the product."""
    n = image.shape[0]
    layer = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    cx, cy = target.centre
    sx, sy = rng.choice([-1, 1], 2)
    x = cx + sx * target.width * rng.uniform(0.35, 0.6)
    y = cy + sy * target.height * rng.uniform(0.3, 0.55)
    r = 0.5 * min(target.width, target.height) * rng.uniform(0.5, 0.9)
    colour = _random_colour(rng, (128, 128, 128), rng.uniform(0, 0.4))
    if rng.random() < 0.5:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour + (255,))
    else:
        draw.rounded_rectangle(
            [x - r, y - r * 1.5, x + r, y + r * 1.5],
            radius=r * 0.3,
            fill=colour + (255,),
        )
    layer = layer.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4) * n / 256))
    return _over(image, np.asarray(layer, np.float32))


def _lighting(rng: np.random.Generator, image: np.ndarray) -> Image.Image:
    """Colour cast, exposure, a light gradient, vignetting, glare and gamma."""
    n = image.shape[0]
    x, y = _grid(n)
    # Python floats keep float32 arrays float32; NumPy float64 scalars do not.
    gains = np.exp(rng.normal(0, 0.1, 3)).astype(np.float32)
    exposure = math.exp(rng.uniform(-0.6, 0.3))
    theta = rng.uniform(0, 2 * math.pi)
    ramp = 1 + rng.uniform(0, 0.6) * (
        (x - 0.5) * math.cos(theta) + (y - 0.5) * math.sin(theta)
    )
    vignette = 1 - rng.uniform(0, 0.9) * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    image = image * (exposure * ramp * vignette * gains)  # (n, n, 1) x (3,)
    if rng.random() < 0.25:  # Glare from a shop light.
        gx, gy = rng.uniform(0, 1), rng.uniform(0, 1)
        sigma = rng.uniform(0.05, 0.2)
        image += (
            255.0
            * rng.uniform(0.15, 0.4)
            * np.exp(-((x - gx) ** 2 + (y - gy) ** 2) / (2 * sigma * sigma))
        )
    gamma = rng.uniform(0.8, 1.25)
    table = np.round(255 * np.linspace(0, 1, 256) ** gamma).astype(int)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).point(
        table.tolist() * 3
    )


def _camera(rng: np.random.Generator, pil: Image.Image) -> np.ndarray:
    """Blur (focus or motion), sensor noise and JPEG: (n, n, 3) uint8."""
    n = pil.width
    radius = rng.uniform(0.0, 1.4) * n / 256
    if radius > 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(radius))
    out = np.asarray(pil, np.float32)
    if rng.random() < 0.2:  # Hand shake: average copies along a short path.
        length = rng.uniform(2, 7) * n / 256
        a = rng.uniform(0, math.pi)
        steps = np.linspace(-length / 2, length / 2, 7)
        out = (
            sum(
                _shift_edge(out, round(t * math.cos(a)), round(t * math.sin(a)))
                for t in steps
            )
            / 7
        )
    sigma = rng.uniform(1.0, 8.0)
    # Luma noise per pixel; chroma noise in 2x2 blocks, as demosaicing smears it.
    chroma = np.repeat(
        np.repeat(
            rng.standard_normal(
                ((n + 1) // 2, (n + 1) // 2, 3), dtype=np.float32
            ),
            2,
            0,
        ),
        2,
        1,
    )[:n, :n]
    out = (
        out
        + sigma * rng.standard_normal((n, n, 1), dtype=np.float32)
        + 0.5 * sigma * chroma
    )
    buffer = io.BytesIO()
    Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=int(rng.integers(30, 90))
    )
    return np.asarray(Image.open(buffer).convert("RGB"))


def _shift_edge(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shifts an image, repeating its edge pixels into the gap."""
    pad = max(abs(dx), abs(dy))
    padded = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    n_y, n_x = a.shape[:2]
    return padded[pad - dy : pad - dy + n_y, pad - dx : pad - dx + n_x]


def _place_standing(
    crop, n, rng, scene: _Scene, x_range, size_range, skew
) -> _Placed:
    """A product standing on the table, its bottom below the horizon."""
    aspect = crop.shape[0] / crop.shape[1]
    longest = rng.uniform(*size_range) * n
    height = longest * min(1.0, aspect)
    bottom = rng.uniform(scene.horizon + 0.03, 0.97) * n
    bottom = float(np.clip(bottom, 0.95 * height, 1.02 * n))
    centre = (rng.uniform(*x_range) * n, bottom - height / 2)
    angle = float(np.clip(rng.normal(0, 4), -10, 10))
    return _place(crop, n, centre, longest, angle, rng, skew)


def _add_strangers(
    rng: np.random.Generator, scene: _Scene, count: int
) -> np.ndarray:
    """The scene with `count` non-catalogue packages standing in it."""
    image = scene.image
    n = image.shape[0]
    for _ in range(count):
        placed = _place_standing(
            _stranger_sprite(rng, n),
            n,
            rng,
            scene,
            (-0.05, 1.05),
            (0.25, 0.6),
            skew=0.5,
        )
        image = _cast_shadow(image, placed, rng, rng.uniform(0.2, 0.5), 0.15)
        image = _composite(image, placed)
    return image


def render_query(
    product_index: int,
    num_products: int,
    query_index: int,
    size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """Renders query `query_index` of a product: a shopper's photo of it.

    The product stands on a table or shelf, or is held in a hand, seen at an
    angle, among clutter and other catalogue products (chosen among
    `num_products`), under changed lighting, then blurred, noised and JPEG
    compressed. Geometry and photometry are drawn here, independently of the
    training augmentation.

    Args:
      product_index: the product shown, in [0, num_products).
      num_products: size of the catalogue the distractors come from.
      query_index: which photo of the product, >= 0.
      size: output height and width in pixels, >= 16.
      seed: the catalogue's seed, >= 0.

    Returns:
      `(size, size, 3)` uint8.

    Raises:
      ValueError: on an index out of range, a negative seed or a size below 16.
    """
    _check_product_index(product_index, num_products)
    _check_size_and_seed(size, seed)
    if query_index < 0:
        raise ValueError(f"query_index={query_index} must be non-negative.")
    rng = _rng(seed, _QUERY_STREAM, product_index, query_index)
    n = size
    scene = _scene(rng, n)
    image = _add_strangers(rng, scene, int(rng.integers(0, 2)))
    others = [i for i in range(num_products) if i != product_index]
    count = min(len(others), int(rng.integers(1, 4)))
    for other in rng.choice(others, size=count, replace=False) if count else []:
        x_range = (-0.08, 0.2) if rng.random() < 0.5 else (0.8, 1.08)
        placed = _place_standing(
            _product_sprite(int(other), n, seed),
            n,
            rng,
            scene,
            x_range,
            (0.35, 0.75),
            skew=0.5,
        )
        image = _cast_shadow(image, placed, rng, rng.uniform(0.2, 0.5), 0.15)
        image = _composite(image, placed)
    sprite = _product_sprite(product_index, n, seed)
    if rng.random() < 0.35:  # Held up to the camera.
        centre = rng.uniform(0.38, 0.62, 2) * n
        target = _place(
            sprite,
            n,
            centre,
            rng.uniform(0.5, 0.85) * n,
            float(rng.uniform(-35, 35)),
            rng,
            skew=1.0,
        )
        behind, in_front = _hand_layers(target, rng, n)
        image = _cast_shadow(image, target, rng, rng.uniform(0.1, 0.3), 0.3)
        image = _composite(_over(image, behind), target)
        image = _over(image, in_front)
    else:
        target = _place_standing(
            sprite, n, rng, scene, (0.3, 0.7), (0.5, 0.85), skew=1.0
        )
        image = _cast_shadow(image, target, rng, rng.uniform(0.25, 0.55), 0.12)
        image = _composite(image, target)
        occluder = rng.random()
        if occluder < 0.25:
            image = _draw_blob(image, target, rng)
        elif occluder < 0.45 and others:  # Another product in front, at a side.
            side = rng.choice([-1, 1])
            x = (
                target.centre[0] + side * target.width * rng.uniform(0.6, 0.9)
            ) / n
            placed = _place_standing(
                _product_sprite(int(rng.choice(others)), n, seed),
                n,
                rng,
                scene,
                (x, x + 1e-3),
                (0.3, 0.6),
                skew=0.5,
            )
            image = _composite(image, placed)
    if scene.lip is not None:
        image = _draw_lip(image, scene.lip)
    return _camera(rng, _lighting(rng, image))


def render_background(
    background_index: int, size: int = 256, seed: int = 0
) -> np.ndarray:
    """Renders a scene like a query's but with no catalogue product in it.

    Args:
      background_index: which scene, >= 0.
      size: output height and width in pixels, >= 16.
      seed: the catalogue's seed, >= 0.

    Returns:
      `(size, size, 3)` uint8.

    Raises:
      ValueError: on a negative index or seed, or a size below 16.
    """
    _check_size_and_seed(size, seed)
    if background_index < 0:
        raise ValueError(
            f"background_index={background_index} must be non-negative."
        )
    rng = _rng(seed, _BACKGROUND_STREAM, background_index)
    scene = _scene(rng, size)
    image = _add_strangers(rng, scene, int(rng.integers(1, 5)))
    if scene.lip is not None:
        image = _draw_lip(image, scene.lip)
    return _camera(rng, _lighting(rng, image))


def _item_id(product_index: int) -> str:
    return f"p{product_index:03d}"


def _manifest(
    num_products, queries_per_product, num_backgrounds, image_size, seed
) -> dict:
    return {
        "generator": _GENERATOR,
        "format_version": _FORMAT_VERSION,
        "num_products": num_products,
        "queries_per_product": queries_per_product,
        "num_backgrounds": num_backgrounds,
        "image_size": image_size,
        "seed": seed,
    }


def _catalog_at(out_dir: str, manifest: dict) -> SyntheticCatalog:
    return SyntheticCatalog(
        catalog_dir=os.path.join(out_dir, _CATALOG_DIR),
        catalog_csv=os.path.join(out_dir, _CATALOG_CSV),
        queries_csv=os.path.join(out_dir, _QUERIES_CSV),
        backgrounds_dir=os.path.join(out_dir, _BACKGROUNDS_DIR),
        num_products=manifest["num_products"],
        num_queries=manifest["num_products"] * manifest["queries_per_product"],
    )


def _read_manifest(out_dir: str) -> dict | None:
    """The manifest if `out_dir` holds one of our catalogues, else None."""
    try:
        with open(os.path.join(out_dir, _MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if (
        not isinstance(manifest, dict)
        or manifest.get("generator") != _GENERATOR
    ):
        return None
    return manifest


def _is_complete(out_dir: str, manifest: dict) -> bool:
    """Whether every file the manifest implies is there (a cheap check)."""
    counts = {
        _CATALOG_DIR: manifest.get("num_products", -1),
        _QUERIES_DIR: manifest.get("num_products", -1)
        * manifest.get("queries_per_product", -1),
        _BACKGROUNDS_DIR: manifest.get("num_backgrounds", -1),
    }
    try:
        return all(
            len(os.listdir(os.path.join(out_dir, d))) == count
            for d, count in counts.items()
        ) and all(
            os.path.isfile(os.path.join(out_dir, f))
            for f in (_CATALOG_CSV, _QUERIES_CSV)
        )
    except OSError:
        return False


def _write_csv(path: str, header, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_files(root: str, manifest: dict) -> None:
    num_products = manifest["num_products"]
    size, seed = manifest["image_size"], manifest["seed"]
    for d in (_CATALOG_DIR, _QUERIES_DIR, _BACKGROUNDS_DIR):
        os.makedirs(os.path.join(root, d))
    catalog_rows = []
    for p in range(num_products):
        path = f"{_CATALOG_DIR}/{_item_id(p)}.png"
        Image.fromarray(render_product(p, size, seed)).save(
            os.path.join(root, path), format="PNG"
        )
        catalog_rows.append((_item_id(p), path))
    _write_csv(
        os.path.join(root, _CATALOG_CSV), ("item_id", "path"), catalog_rows
    )
    query_rows = []
    for p in range(num_products):
        for q in range(manifest["queries_per_product"]):
            path = f"{_QUERIES_DIR}/q{len(query_rows):04d}.jpg"
            Image.fromarray(render_query(p, num_products, q, size, seed)).save(
                os.path.join(root, path), format="JPEG", quality=_JPEG_QUALITY
            )
            query_rows.append((path, _item_id(p)))
    _write_csv(
        os.path.join(root, _QUERIES_CSV), ("path", "item_id"), query_rows
    )
    for b in range(manifest["num_backgrounds"]):
        Image.fromarray(render_background(b, size, seed)).save(
            os.path.join(root, _BACKGROUNDS_DIR, f"bg{b:03d}.jpg"),
            format="JPEG",
            quality=_JPEG_QUALITY,
        )
    # The manifest goes last: its presence marks a complete catalogue.
    with open(os.path.join(root, _MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


def _check_replaceable(out_dir: str, wanted: dict) -> dict | None:
    """Decides what to do with an existing `out_dir`.

    Returns:
      The manifest of a complete catalogue with the wanted parameters (reuse
      it), or None (write a new one; anything there is ours to replace).

    Raises:
      FileExistsError: `out_dir` is a file, or a non-empty directory holding
        anything but one of our catalogues.
    """
    if not os.path.exists(out_dir):
        return None
    if not os.path.isdir(out_dir):
        raise FileExistsError(
            f"{out_dir} is a file, not a directory; choose "
            "another --out_dir."
        )
    entries = set(os.listdir(out_dir))
    if not entries:
        return None
    manifest = _read_manifest(out_dir)
    if manifest is None or not entries <= _OUR_ENTRIES:
        raise FileExistsError(
            f"{out_dir} is not empty and is not a synthetic catalogue written by "
            f"{_GENERATOR} (found {sorted(entries)[:5]}); refusing to overwrite "
            "it. Choose a new or empty --out_dir."
        )
    if manifest == wanted and _is_complete(out_dir, manifest):
        return manifest
    return None


def write_synthetic_catalog(
    out_dir: str,
    num_products: int = 24,
    queries_per_product: int = 2,
    num_backgrounds: int = 16,
    image_size: int = 256,
    seed: int = 0,
) -> SyntheticCatalog:
    """Writes catalogue images, queries and backgrounds, with CSV indexes.

    The files are built in a temporary directory beside `out_dir` and renamed
    into place, so `out_dir` is never half-written. A complete catalogue
    already there with the same parameters is reused; one of ours with other
    parameters is replaced; anything else is left alone.

    Layout:
      catalog/p000.png ...     product on white, `image_size` square
      catalog.csv              item_id,path
      queries/q0000.jpg ...    in-the-wild photos
      queries.csv              path,item_id
      backgrounds/bg000.jpg    scenes with no catalogue product
      manifest.json            the parameters, written last

    Args:
      out_dir: directory to create (or reuse).
      num_products: catalogue size, >= 1.
      queries_per_product: photos per product, >= 0.
      num_backgrounds: product-free scenes, >= 0.
      image_size: height and width of every image, >= 16.
      seed: selects the catalogue, >= 0; same seed, byte-identical files.

    Returns:
      The paths and counts.

    Raises:
      ValueError: on a bad count, size or seed.
      FileExistsError: `out_dir` exists, is not empty and is not ours.
    """
    if num_products < 1:
        raise ValueError(f"num_products={num_products} must be at least 1.")
    if queries_per_product < 0 or num_backgrounds < 0:
        raise ValueError(
            f"queries_per_product={queries_per_product} and "
            f"num_backgrounds={num_backgrounds} must be non-negative."
        )
    _check_size_and_seed(image_size, seed)
    out_dir = os.path.normpath(out_dir)
    wanted = _manifest(
        num_products, queries_per_product, num_backgrounds, image_size, seed
    )
    if _check_replaceable(out_dir, wanted) is not None:
        logging.info("Reusing the synthetic catalogue in %s.", out_dir)
        return _catalog_at(out_dir, wanted)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(
        prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent
    )
    try:
        _write_files(tmp, wanted)
        _publish(tmp, out_dir, wanted)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logging.info(
        "Wrote %d products, %d queries and %d backgrounds to %s.",
        num_products,
        num_products * queries_per_product,
        num_backgrounds,
        out_dir,
    )
    return _catalog_at(out_dir, wanted)


def _publish(tmp: str, out_dir: str, wanted: dict) -> None:
    """Renames `tmp` to `out_dir`, replacing an empty dir or an old catalogue."""
    if _check_replaceable(out_dir, wanted) is not None:
        return  # Another writer finished the same catalogue meanwhile.
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        # One of ours with other parameters: move it aside, then swap.
        old = tempfile.mkdtemp(
            prefix=f".{os.path.basename(out_dir)}.old-",
            dir=os.path.dirname(tmp),
        )
        os.rename(out_dir, os.path.join(old, "catalogue"))
        logging.info(
            "Replacing the synthetic catalogue in %s (other " "parameters).",
            out_dir,
        )
        try:
            os.rename(tmp, out_dir)
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp, out_dir)  # Replaces an empty directory atomically.
    except OSError:
        if _check_replaceable(out_dir, wanted) is None:
            raise
