"""The drawing surface: an RGBA canvas, its masks, shading and fitted text.

Shapes are drawn as masks in normalised coordinates [0, 1] and painted,
opaque, with a colour and a shading (diffuse and specular terms).
"""

import functools

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont


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


class Canvas:
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
