"""Per-shape drawers: bottle, jar, tube, box, lipstick, compact and pump.

`draw_package` draws a shaded body, a cap and the label onto a canvas, centred
in the frame.
"""

import dataclasses

import numpy as np

from beau_tf.datasets.synthetic import canvas
from beau_tf.datasets.synthetic import designs
from beau_tf.datasets.synthetic import labels


def _ribs(cv: canvas.Canvas, x0, x1, count: int) -> np.ndarray:
    """A mask of `count` vertical ribs across [x0, x1]: the grip of a cap."""
    phase = canvas.frac((cv.x - x0) / (x1 - x0) * count)
    return (phase < 0.3).astype(np.float32)


def _draw_cap(cv: canvas.Canvas, form: designs.Form, box) -> None:
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


def _draw_bottle(
    cv: canvas.Canvas, form: designs.Form, label: designs.Label
) -> None:
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
    box, radius = labels.label_box(form, x0, x1, body_top, bottom)
    labels.draw_label(
        cv, label, form.body, box, body * cv.rect(box, radius), shading
    )
    _draw_cap(cv, form, (0.5 - cap_w / 2, top, 0.5 + cap_w / 2, cap_bottom))


def _draw_pump(
    cv: canvas.Canvas, form: designs.Form, label: designs.Label
) -> None:
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
    box, radius = labels.label_box(form, x0, x1, body_top + 0.08 * h, bottom)
    labels.draw_label(
        cv, label, form.body, box, body * cv.rect(box, radius), shading
    )


def _draw_jar(
    cv: canvas.Canvas, form: designs.Form, label: designs.Label
) -> None:
    w, h = form.width, form.height
    x0, x1, top, bottom = 0.5 - w / 2, 0.5 + w / 2, 0.5 - h / 2, 0.5 + h / 2
    lid_h = 0.27 * h
    body = cv.rect((x0, top + lid_h - 0.01, x1, bottom), 0.14 * w)
    shading = cv.cylinder(x0, x1, form.gloss)
    cv.paint(body, form.body, shading)
    box, radius = labels.label_box(form, x0, x1, top + lid_h, bottom)
    labels.draw_label(
        cv, label, form.body, box, body * cv.rect(box, radius), shading
    )
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


def _draw_tube(
    cv: canvas.Canvas, form: designs.Form, label: designs.Label
) -> None:
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
    labels.draw_label(cv, label, form.body, box, body * cv.rect(box), shading)
    crimp = (0.5 - 0.58 * w, top, 0.5 + 0.58 * w, top + crimp_h + 0.004)
    crimp_mask = cv.rect(crimp)
    body_colour = np.asarray(form.body, np.float32)
    crimp_shading = cv.flat(crimp[1], crimp[3], 0.9, 0.1)
    cv.paint(crimp_mask, body_colour, crimp_shading)
    ridges = (canvas.frac((cv.y - top) / crimp_h * 5) < 0.35).astype(np.float32)
    cv.paint(crimp_mask * ridges, body_colour * 0.8, crimp_shading)
    cap = (0.5 - cap_w / 2, shoulder_y, 0.5 + cap_w / 2, bottom)
    cap_shading = cv.cylinder(cap[0], cap[2], 0.4)
    cv.paint(cv.rect(cap, 0.04 * w), form.cap, cap_shading)
    seam = cv.rect(
        (cap[0], shoulder_y + 0.3 * cap_h, cap[2], shoulder_y + 0.36 * cap_h)
    )
    cv.paint(seam, np.asarray(form.cap, np.float32) * 0.6, cap_shading)


def _draw_box(
    cv: canvas.Canvas, form: designs.Form, label: designs.Label
) -> None:
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
    labels.draw_label(
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


def _draw_lipstick(
    cv: canvas.Canvas, form: designs.Form, label: designs.Label
) -> None:
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
    labels.draw_label(cv, label, form.body, box, base * cv.rect(box), shading)


def _draw_compact(
    cv: canvas.Canvas, form: designs.Form, label: designs.Label
) -> None:
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
            designs.WHITE,
            shading,
        )
    box = (cx - ring, cy - ring, cx + ring, cy + ring)
    plain = dataclasses.replace(label, white_rules=False)
    labels.draw_label(
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


def draw_package(
    cv: canvas.Canvas, form: designs.Form, label: designs.Label
) -> None:
    """Draws the package `form` with `label` on it, centred in the frame."""
    _DRAWERS[form.shape](cv, form, label)
