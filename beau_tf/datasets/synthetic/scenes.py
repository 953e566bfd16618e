"""Synthetic shoppers' photos: catalogue products in cluttered scenes.

- `render_query` photographs a catalogue product "in the wild": tilted and
  warped, standing on a table or held in a hand, among clutter and other
  catalogue products, under a colour cast, vignetting and a shadow, partly
  occluded, blurred, noisy and JPEG-compressed. It is written independently
  of `beau_tf.data.augment`, so evaluation on these queries does not score
  the training augmentation against itself.
- `render_query_and_mask` gives the same photo and the true mask of its
  product: where it shows, less what hides it.
- `render_background` draws the same kind of scene with no catalogue product.

The products come from `products`; like them, every image is a pure function
of its indices and `seed`.
"""

import dataclasses
import io
import math

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFilter

from beau_tf.datasets.synthetic import canvas
from beau_tf.datasets.synthetic import designs
from beau_tf.datasets.synthetic import products
from beau_tf.datasets.synthetic import randomness

_SKIN_TONES: tuple[designs.Colour, ...] = (
    (241, 194, 167),
    (224, 172, 140),
    (198, 134, 103),
    (161, 102, 72),
    (112, 70, 50),
)
_WALL_COLOURS: tuple[designs.Colour, ...] = (
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
_SURFACE_COLOURS: tuple[designs.Colour, ...] = (
    (178, 130, 90),
    (120, 86, 60),
    (220, 220, 214),
    (232, 232, 236),
    (90, 90, 96),
    (204, 180, 146),
    (150, 160, 172),
    (60, 48, 40),
)


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
    wall = np.asarray(randomness.pick(rng, _WALL_COLOURS), np.float32)
    wall *= rng.uniform(0.85, 1.1)
    wall_low = wall * rng.uniform(0.7, 1.05)
    image = np.broadcast_to(wall + (wall_low - wall) * y, (n, n, 3)).copy()
    texture = int(rng.integers(4))
    period = rng.uniform(0.06, 0.2)
    if texture == 1:  # Tiles with darker grout.
        grout = (canvas.frac(x / period) < 0.05) | (
            canvas.frac(y / period) < 0.05
        )
        image *= np.where(grout, np.float32(0.8), np.float32(1.0))
    elif texture == 2:  # Striped wallpaper.
        image *= np.where(
            canvas.frac(x / period) < 0.5,
            np.float32(0.92),
            np.float32(1.0),
        )
    elif texture == 3:  # A woven fabric.
        image *= 1 + 0.05 * np.sin(x * n * 2.1) * np.sin(y * n * 2.1)
    image *= 0.9 + 0.2 * _smooth_noise(rng, n, int(rng.integers(3, 9)))
    horizon = float(rng.uniform(0.42, 0.78))
    surface = np.asarray(randomness.pick(rng, _SURFACE_COLOURS), np.float32)
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
            font = canvas.load_font(max(8, int(r * 0.5 / 4) * 4))
            draw.text(
                (cx - r, cy),
                designs.random_brand(rng),
                fill=fill,
                font=font,
            )
    radius = rng.uniform(0.0, 2.5) * n / 256  # Depth of field.
    if radius > 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(radius))
    lip = None
    if rng.random() < 0.4:
        lip_top = rng.uniform(0.86, 0.95)
        lip_h = rng.uniform(0.04, 0.08)
        colour = randomness.pick(
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


def _lip_alpha(n: int, lip) -> np.ndarray:
    """Where `_draw_lip` draws: (n, n) float32, 1 on the shelf's edge."""
    top, height, _, _ = lip
    layer = Image.new("L", (n, n), 0)
    ImageDraw.Draw(layer).rectangle(
        [0, top * n, n, (top + height) * n], fill=255
    )
    return np.asarray(layer, np.float32) / 255.0


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
    skin = np.asarray(randomness.pick(rng, _SKIN_TONES), np.float32)
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


def _draw_blob(
    image: np.ndarray, target: _Placed, rng
) -> tuple[np.ndarray, np.ndarray]:
    """An out-of-focus foreground object over one corner of the product.

    Returns:
      The image with the blob, and the blob's alpha (n, n) in [0, 1].
    """
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
    rgba = np.asarray(layer, np.float32)
    return _over(image, rgba), rgba[..., 3] / 255.0


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
            products.stranger_sprite(rng, n),
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
    return render_query_and_mask(
        product_index, num_products, query_index, size, seed
    )[0]


def render_query_and_mask(
    product_index: int,
    num_products: int,
    query_index: int,
    size: int = 256,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`render_query`'s photo (the same pixels) and where its product is.

    The mask is the product's own silhouette less what is drawn in front of
    it: the fingers and thumb of a hand holding it, a blurred occluder,
    another product standing before it, a shelf's edge. A pixel is in the
    mask when at least half of it shows the product. The camera's blur and
    hand shake, applied after, are not followed (they move edges by a pixel
    or two at 256 px).

    Args:
      product_index: the product shown, in [0, num_products).
      num_products: size of the catalogue the distractors come from.
      query_index: which photo of the product, >= 0.
      size: output height and width in pixels, >= 16.
      seed: the catalogue's seed, >= 0.

    Returns:
      `(image (size, size, 3) uint8, mask (size, size) bool)`.

    Raises:
      ValueError: on an index out of range, a negative seed or a size below 16.
    """
    products.check_product_index(product_index, num_products)
    products.check_size_and_seed(size, seed)
    if query_index < 0:
        raise ValueError(f"query_index={query_index} must be non-negative.")
    rng = randomness.keyed_rng(
        seed, randomness.QUERY_STREAM, product_index, query_index
    )
    image, visible = _compose_query(
        rng, product_index, num_products, size, seed
    )
    return _camera(rng, _lighting(rng, image)), visible >= 0.5


def _compose_query(
    rng: np.random.Generator,
    product_index: int,
    num_products: int,
    n: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The query's scene before lighting and camera, and how much of each
    pixel shows the product: `((n, n, 3) float32, (n, n) float32 in [0, 1])`.

    Only what is drawn in front of the product lowers its visibility, and
    computing it draws nothing from `rng`, so the pixels are those a
    renderer without masks would draw.
    """
    scene = _scene(rng, n)
    image = _add_strangers(rng, scene, int(rng.integers(0, 2)))
    others = [i for i in range(num_products) if i != product_index]
    count = min(len(others), int(rng.integers(1, 4)))
    for other in rng.choice(others, size=count, replace=False) if count else []:
        x_range = (-0.08, 0.2) if rng.random() < 0.5 else (0.8, 1.08)
        placed = _place_standing(
            products.product_sprite(int(other), n, seed),
            n,
            rng,
            scene,
            x_range,
            (0.35, 0.75),
            skew=0.5,
        )
        image = _cast_shadow(image, placed, rng, rng.uniform(0.2, 0.5), 0.15)
        image = _composite(image, placed)
    sprite = products.product_sprite(product_index, n, seed)
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
        visible = target.alpha * (1 - in_front[..., 3] / 255.0)
    else:
        target = _place_standing(
            sprite, n, rng, scene, (0.3, 0.7), (0.5, 0.85), skew=1.0
        )
        image = _cast_shadow(image, target, rng, rng.uniform(0.25, 0.55), 0.12)
        image = _composite(image, target)
        visible = target.alpha
        occluder = rng.random()
        if occluder < 0.25:
            image, blob = _draw_blob(image, target, rng)
            visible = visible * (1 - blob)
        elif occluder < 0.45 and others:  # Another product in front, at a side.
            side = rng.choice([-1, 1])
            x = (
                target.centre[0] + side * target.width * rng.uniform(0.6, 0.9)
            ) / n
            placed = _place_standing(
                products.product_sprite(int(rng.choice(others)), n, seed),
                n,
                rng,
                scene,
                (x, x + 1e-3),
                (0.3, 0.6),
                skew=0.5,
            )
            image = _composite(image, placed)
            visible = visible * (1 - placed.alpha)
    if scene.lip is not None:
        image = _draw_lip(image, scene.lip)
        visible = visible * (1 - _lip_alpha(n, scene.lip))
    return image, visible


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
    products.check_size_and_seed(size, seed)
    if background_index < 0:
        raise ValueError(
            f"background_index={background_index} must be non-negative."
        )
    rng = randomness.keyed_rng(
        seed, randomness.BACKGROUND_STREAM, background_index
    )
    scene = _scene(rng, size)
    image = _add_strangers(rng, scene, int(rng.integers(1, 5)))
    if scene.lip is not None:
        image = _draw_lip(image, scene.lip)
    return _camera(rng, _lighting(rng, image))
