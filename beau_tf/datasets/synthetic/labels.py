"""The print on a package: pattern, name panel, brand and kind words.

Some print is white, so a mask must keep white pixels inside the product.
"""

import numpy as np

from beau_tf.datasets.synthetic import canvas
from beau_tf.datasets.synthetic import designs

_INK: designs.Colour = (26, 26, 32)


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _pattern(label: designs.Label, u, v, aspect: float) -> np.ndarray:
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
        t = canvas.frac((su * np.cos(a) + v * np.sin(a)) * f) < label.duty
    elif label.pattern == "dots":
        du, dv = canvas.frac(su * f) - 0.5, canvas.frac(v * f) - 0.5
        t = du * du + dv * dv < 0.35 * label.duty
    elif label.pattern == "chevrons":
        zigzag = np.abs(canvas.frac(su * f) - 0.5)
        t = canvas.frac(v * f * 0.6 + zigzag) < label.duty
    elif label.pattern == "gradient":
        t = np.clip(v * 0.8 + u * 0.2, 0, 1)
    else:  # Solid, with accent rules at the top and bottom.
        t = (np.abs(v - 0.5) > 0.4) & (np.abs(v - 0.5) < 0.46)
    t = np.asarray(t, np.float32)[..., None]
    return c1 + (c2 - c1) * t


def _text_colour(background) -> designs.Colour:
    return designs.WHITE if _luma(background) < 150 else _INK


def draw_label(
    cv: canvas.Canvas,
    label: designs.Label,
    body: designs.Colour,
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
    if (
        ink == _INK
        and _luma(body) < 110
        and designs.colour_distance(body, ground) > 120
    ):
        ink = body  # Dark brands print their name in the package colour.
    cv.paint(cv.text(label.brand, brand_box) * region, ink, shading)
    kind_ink = (
        label.accent
        if designs.colour_distance(label.accent, ground) > 140
        else ink
    )
    cv.paint(
        cv.text(label.kind, kind_box, bold=False) * region, kind_ink, shading
    )
    if label.white_rules:
        t = 0.012
        rules = np.maximum(
            cv.rect((x0, y0 + 0.06 * h, x1, y0 + 0.06 * h + t)),
            cv.rect((x0, y1 - 0.06 * h - t, x1, y1 - 0.06 * h)),
        )
        cv.paint(rules * region, designs.WHITE, shading)


def label_box(form: designs.Form, x0, x1, y0, y1):
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
