"""Foreground masks of catalogue products, from alpha or from the image border.

Catalogue images are studio shots of one product (or a group of items) on a
plain, usually near-white, background. The mask tells later stages which pixels
are product, so augmentation can paste the product on new backgrounds and the
model can learn to attend to it. This module is NumPy + scipy.ndimage only and
deterministic; it never touches TensorFlow.

Method (`extract_foreground_mask`):

1. Alpha. When an alpha channel is given and it is informative (not every pixel
   is >= 128), the raw mask is `alpha >= 128` and the colours are ignored.
2. Background model. Otherwise the image gets a 3x3 box blur (JPEG noise) and
   a colour plane `c0 + cy * y + cx * x` per channel is fitted to a border strip
   `border_width_fraction` of the short side wide. The fit is robust: it starts
   from the per-channel median, keeps border pixels close to the current model
   and refits, so a product touching an edge is outvoted, and a soft studio
   gradient (light top, darker bottom) is modelled rather than absorbed into a
   wide tolerance. If fewer than `min_border_background_fraction` of the border
   pixels fit, or they vary more than `max_tolerance` allows (see 3), no
   background is visible (a product filling the frame) and the whole image is
   foreground.
3. Tolerance. A pixel is background-coloured when its Euclidean RGB distance
   (0-255 scale) to the model is at most
   `max(tolerance_from_border_spread * spread, min_tolerance)`, where spread is
   the median distance of the border pixels that fit the model.
   The median, not a high percentile, because pale product pixels on the frame
   would inflate a high percentile; a clean studio white therefore gets the
   small `min_tolerance`, which keeps off-white carton panels (~245 on 255)
   foreground.
4. Background = the background-coloured pixels 4-connected to the image border
   (`scipy.ndimage.label`), so white print or labels inside a product stay
   foreground. Up to `outline_peel_layers` layers of the outline are then peeled
   back where a pixel's unblurred distance is below half the strongest unblurred
   distance within 3 px: blur, JPEG ringing and chroma subsampling smear colour
   outwards, and half contrast is where the true edge lies.
5. Clean-up (shared with the alpha path). Foreground components (8-connected)
   smaller than `min_speck_fraction` of the largest are dropped, so dust and
   shadows far from the product disappear while a group of items (tomatoes,
   plums) survives. Enclosed background-coloured regions ("holes") are filled
   when their area is at most `max_hole_fraction` of the product's filled area;
   larger ones stay background, since a region that big is more likely the
   background seen through a ring-shaped product than print on it.
6. Status. Coverage below `empty_fraction` is `EMPTY`, above `full_fraction` is
   `FULL`; callers flag those images instead of training on them silently.

A 512x512 image takes about 15-35 ms on one CPU core (the range is a busy
shared machine; `bench/mask_gallery.py` times it); pass images already
downscaled to the size you will train on.

Known limit: a product region of exactly the background colour that touches
the background (the pure-white side of a milk carton on white) has no edge to
stop the background at, so it is lost. Holes only help when the region is
enclosed by product.
"""

import dataclasses
import enum

from absl import logging
import numpy as np
from scipy import ndimage

# An outline pixel is peeled when its distance is below this fraction of the
# strongest distance within the radius: half contrast is where a blurred edge
# truly lies, and 3 px reaches the product's full contrast past the 2 px that
# the blur plus JPEG chroma subsampling smear colour outwards.
_PEEL_CONTRAST = 0.5
_PEEL_RADIUS = 3
_MAX_BORDER_SAMPLES = 2048
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
_EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """How foreground masks are derived; the defaults suit studio catalogue shots.

    Attributes:
      border_width_fraction: Width of the border strip used to estimate the
        background, as a fraction of the image's short side (at least 1 px).
      min_tolerance: Colour distance (Euclidean RGB, 0-255 scale) up to which a
        pixel always counts as background-coloured. 10 keeps off-white packaging
        (~245 grey, distance ~17) apart from a pure-white backdrop; JPEG noise is
        left to the blur and the outline peel instead.
      max_tolerance: Border pixels further than this from the model are not
        background; a border whose spread asks for a larger tolerance is texture
        (a product filling the frame), not a backdrop.
      tolerance_from_border_spread: The tolerance is this many times the median
        distance of the border's background pixels to the model; 3.0 puts it
        about 4.6 sigma out for Gaussian noise, beyond nearly every noisy pixel.
      outline_peel_layers: How many pixel layers of the outline may be peeled
        back to the half-contrast edge (undoes blur and JPEG colour bleeding).
      min_border_background_fraction: If fewer border pixels than this lie
        within `max_tolerance` of the background model, the product fills the
        frame and the mask is all foreground.
      min_speck_fraction: Foreground components smaller than this fraction of the
        largest component are dropped.
      max_hole_fraction: Enclosed background-coloured regions up to this fraction
        of the product's filled area are filled; larger ones stay background.
      empty_fraction: Masks covering less than this fraction are `EMPTY`.
      full_fraction: Masks covering more than this fraction are `FULL`.
    """

    border_width_fraction: float = 0.02
    min_tolerance: float = 10.0
    max_tolerance: float = 48.0
    tolerance_from_border_spread: float = 3.0
    outline_peel_layers: int = 2
    min_border_background_fraction: float = 0.4
    min_speck_fraction: float = 0.02
    max_hole_fraction: float = 0.1
    empty_fraction: float = 0.01
    full_fraction: float = 0.98

    def __post_init__(self):
        for name in (
            "border_width_fraction",
            "min_border_background_fraction",
            "min_speck_fraction",
            "max_hole_fraction",
            "empty_fraction",
            "full_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"MaskConfig.{name}={value} must be in [0, 1]."
                )
        if not 0.0 <= self.min_tolerance <= self.max_tolerance:
            raise ValueError(
                f"MaskConfig needs 0 <= min_tolerance ({self.min_tolerance}) <= "
                f"max_tolerance ({self.max_tolerance})."
            )
        if self.outline_peel_layers < 0:
            raise ValueError(
                f"MaskConfig.outline_peel_layers={self.outline_peel_layers} must be "
                ">= 0."
            )
        if self.empty_fraction >= self.full_fraction:
            raise ValueError(
                f"MaskConfig.empty_fraction={self.empty_fraction} must be below "
                f"full_fraction={self.full_fraction}."
            )


class MaskStatus(enum.Enum):
    """Whether a mask is usable (`OK`) or should be flagged by the caller."""

    OK = "ok"
    EMPTY = "empty"
    FULL = "full"


@dataclasses.dataclass(frozen=True)
class ForegroundMask:
    """A product's foreground mask and how it was obtained.

    Attributes:
      mask: (H, W) bool, True on the product.
      status: `OK`, or `EMPTY` / `FULL` by coverage.
      coverage: Fraction of pixels that are foreground.
      background_rgb: Estimated background colour at the image centre (the model
        may be a gentle gradient), or None when alpha was used or no background
        was visible.
      source: "alpha" or "border".
    """

    mask: np.ndarray
    status: MaskStatus
    coverage: float
    background_rgb: tuple[int, int, int] | None
    source: str


def extract_foreground_mask(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    config: MaskConfig = MaskConfig(),
) -> ForegroundMask:
    """Derives the product's foreground mask (see the module docstring).

    Args:
      rgb: (H, W, 3) image on the 0-255 scale, uint8 preferably. (H, W, 4) is read
        as RGBA when `alpha` is None; (H, W) and (H, W, 1) as grey.
      alpha: Optional (H, W) or (H, W, 1) opacity, uint8 0-255 (floating point
        alpha is read on a 0-1 scale).
      config: Thresholds, see `MaskConfig`.

    Returns:
      The mask with its status, coverage, background estimate and source.

    Raises:
      ValueError: If `rgb` or `alpha` has an unsupported shape, or they disagree.
    """
    rgb, alpha = _split_inputs(rgb, alpha)
    if alpha is not None and not np.all(alpha >= 128):
        background_like = alpha < 128
        mask = _clean_up(background_like, distance_sq=None, config=config)
        return _finish(mask, None, "alpha", config)

    # Channels first and C-contiguous, so each colour plane is one dense block.
    raw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
    height, width = raw.shape[1:]
    plane = _fit_background_plane(raw, config)
    if plane is None:
        # No plain backdrop on the border: nothing to remove.
        return _finish(np.ones((height, width), bool), None, "border", config)
    coefficients, tolerance = plane

    blurred_sq, raw_sq = _squared_distances(raw, coefficients)
    background_like = blurred_sq <= tolerance**2
    mask = _clean_up(background_like, raw_sq, config)
    background_rgb = tuple(
        int(v) for v in np.clip(np.rint(coefficients[0]), 0, 255)
    )
    return _finish(mask, background_rgb, "border", config)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Returns the mask's bounding box.

    Args:
      mask: (H, W) bool (or anything whose non-zero entries are foreground).

    Returns:
      `(top, left, bottom, right)` with exclusive bottom/right, so
      `mask[top:bottom, left:right]` is the tightest crop; None for an empty mask.

    Raises:
      ValueError: If `mask` is not 2-D.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(
            f"bounding_box needs an (H, W) mask, got shape {mask.shape}."
        )
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _split_inputs(
    rgb: np.ndarray, alpha: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalises the accepted layouts to (H, W, 3) and (H, W) on 0-255."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = rgb[..., None]
    if rgb.ndim != 3 or rgb.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"rgb has shape {rgb.shape}; expected (H, W, 3), (H, W, 4) RGBA or "
            "(H, W) grey."
        )
    if rgb.shape[-1] == 4:
        if alpha is None:
            alpha = rgb[..., 3]
        rgb = rgb[..., :3]
    elif rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb has shape {rgb.shape}; the image is empty.")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.ndim == 3 and alpha.shape[-1] == 1:
            alpha = alpha[..., 0]
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(
                f"alpha has shape {alpha.shape} but the image is {rgb.shape[:2]}; "
                "pass an (H, W) alpha matching the image."
            )
        if np.issubdtype(alpha.dtype, np.floating):
            alpha = alpha * 255.0
    return rgb, alpha


def _border_coordinates(
    height: int, width: int, width_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices, each (N,), of the pixels in the border strip."""
    strip = max(1, int(round(width_fraction * min(height, width))))
    rows, cols = np.arange(height), np.arange(width)
    # max() keeps the bands disjoint when the strips meet in a tiny image.
    bottom = max(strip, height - strip)
    right = max(strip, width - strip)
    bands = [
        (rows[:strip], cols),
        (rows[bottom:], cols),  # Top, bottom.
        (rows[strip:bottom], cols[:strip]),  # Left.
        (rows[strip:bottom], cols[right:]),  # Right.
    ]
    ys = np.concatenate([np.repeat(r, c.size) for r, c in bands])
    xs = np.concatenate([np.tile(c, r.size) for r, c in bands])
    return ys, xs


def _fit_background_plane(
    raw: np.ndarray, config: MaskConfig
) -> tuple[np.ndarray, float] | None:
    """Fits a colour plane to the blurred border's background pixels.

    Args:
      raw: (3, H, W) float32 colour planes.
      config: Border width and tolerances.

    Returns:
      `(coefficients, tolerance)`: (3, 3) float32 coefficients, rows (value at the
      centre, per unit y, per unit x) with y and x spanning [-1, 1], and the
      colour tolerance; or None when the border shows no plain backdrop.
    """
    height, width = raw.shape[1:]
    ys, xs = _border_coordinates(height, width, config.border_width_fraction)
    # A regular subsample keeps the fit's cost flat in the image size; a few
    # thousand pixels pin down nine coefficients and a median plenty well.
    stride = -(-ys.size // _MAX_BORDER_SAMPLES)
    ys, xs = ys[::stride], xs[::stride]
    colours = _box_mean_at(raw, ys, xs)  # (N, 3)
    design = np.stack(
        [
            np.ones(ys.shape, np.float32),
            _unit_coordinates(height)[ys],
            _unit_coordinates(width)[xs],
        ],
        axis=-1,
    )  # (N, 3)

    # einsum and broadcasting rather than `@`: a BLAS call here may wake a thread
    # pool, which costs more than these (N, 3) products.
    def fit(inliers):
        a, b = design[inliers], colours[inliers]
        solution, *_ = np.linalg.lstsq(
            np.einsum("ni,nj->ij", a, a),
            np.einsum("ni,nj->ij", a, b),
            rcond=None,
        )
        return solution.astype(np.float32)

    def residual(coefficients):
        model = (
            coefficients[0]
            + design[:, 1:2] * coefficients[1]
            + design[:, 2:3] * coefficients[2]
        )  # (N, 3)
        return np.sqrt(np.sum(np.square(colours - model), axis=-1))

    # Start from the median, which a product touching an edge cannot move, then
    # let a shrinking gate admit a gradient while keeping product pixels out.
    coefficients = np.zeros((3, 3), np.float32)
    coefficients[0] = np.median(colours, axis=0)
    gate = 3.0 * config.max_tolerance
    for _ in range(3):
        inliers = residual(coefficients) <= gate
        if inliers.sum() < 3:
            break
        coefficients = fit(inliers)
        gate = max(config.max_tolerance, 0.5 * gate)

    distances = residual(coefficients)
    inliers = distances <= config.max_tolerance
    fraction = float(inliers.mean())
    # The median, not a high percentile: up to half the strip may be product
    # pixels (pale cartons touching the frame) that would inflate the tolerance.
    spread = float(np.median(distances[inliers])) if fraction else np.inf
    wanted = (
        config.tolerance_from_border_spread * spread if fraction else np.inf
    )
    if (
        not fraction
        or fraction < config.min_border_background_fraction
        or wanted > config.max_tolerance
    ):
        # Too little of the border matches one colour, or it is so varied that no
        # tolerance within max_tolerance covers it: texture, not a backdrop.
        logging.log_every_n(
            logging.INFO,
            "No plain background on the border (%.0f%% match, spread %.1f); "
            "treating the image as all foreground.",
            100,
            100.0 * fraction,
            spread,
        )
        return None
    tolerance = float(max(wanted, config.min_tolerance))
    # Refit on the pixels that are background by the final tolerance, so pale
    # product pixels on the frame do not tilt the plane.
    tight = distances <= tolerance
    if tight.sum() >= 3:
        coefficients = fit(tight)
    return coefficients, tolerance


def _unit_coordinates(size: int) -> np.ndarray:
    """(size,) float32 pixel coordinates mapped onto [-1, 1] (0 if size is 1)."""
    if size == 1:
        return np.zeros(1, np.float32)
    return np.linspace(-1.0, 1.0, size, dtype=np.float32)


def _box_mean_at(
    planes: np.ndarray, ys: np.ndarray, xs: np.ndarray
) -> np.ndarray:
    """(N, 3) 3x3 means (edges replicated) of (3, H, W) planes at N pixels."""
    height, width = planes.shape[1:]
    total = np.zeros((ys.size, planes.shape[0]), np.float32)
    for dy in (-1, 0, 1):
        rows = np.clip(ys + dy, 0, height - 1)
        for dx in (-1, 0, 1):
            total += planes[:, rows, np.clip(xs + dx, 0, width - 1)].T
    return total / 9.0


def _squared_distances(
    raw: np.ndarray, coefficients: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Squared colour distances of each pixel to the background plane.

    Args:
      raw: (3, H, W) float32 colour planes.
      coefficients: (3, 3) plane coefficients from `_fit_background_plane`.

    Returns:
      `(blurred, unblurred)`, each (H, W) float32: the distance after a 3x3 box
      blur (edges replicated), which averages out JPEG noise, and without it.
    """
    height, width = raw.shape[1:]
    y = _unit_coordinates(height)[:, None]  # (H, 1)
    x = _unit_coordinates(width)[None, :]  # (1, W)
    # Preallocated buffers and in-place arithmetic: at 512x512 fresh temporaries
    # (page faults) cost as much as the arithmetic itself.
    blurred_sq = np.zeros((height, width), np.float32)
    raw_sq = np.zeros((height, width), np.float32)
    difference = np.empty((height, width), np.float32)
    scratch = np.empty((height, width), np.float32)
    padded = np.empty((height + 2, width + 2), np.float32)
    rows = np.empty((height, width + 2), np.float32)
    for channel in range(3):
        centre, per_y, per_x = coefficients[:, channel]
        np.subtract(raw[channel], per_y * y, out=difference)
        difference -= centre + per_x * x
        raw_sq += np.square(difference, out=scratch)
        # The model is linear, so blurring the difference is blurring the image
        # and subtracting the model (exactly so away from the edges).
        padded[1:-1, 1:-1] = difference
        padded[0, 1:-1] = difference[0]
        padded[-1, 1:-1] = difference[-1]
        padded[:, 0] = padded[:, 1]
        padded[:, -1] = padded[:, -2]
        np.add(padded[:-2], padded[1:-1], out=rows)
        rows += padded[2:]
        np.add(rows[:, :-2], rows[:, 1:-1], out=scratch)
        scratch += rows[:, 2:]  # 9 x the 3x3 mean.
        blurred_sq += np.square(scratch, out=scratch)
    blurred_sq *= np.float32(1 / 81)
    return blurred_sq, raw_sq


def _max_filter(values: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over a (2r+1)x(2r+1) window with edge replication, for (H, W)."""
    padded = np.pad(values, radius, mode="edge")
    height, width = values.shape
    rows = padded[:height].copy()
    for offset in range(1, 2 * radius + 1):
        np.maximum(rows, padded[offset : offset + height], out=rows)
    out = rows[:, :width].copy()
    for offset in range(1, 2 * radius + 1):
        np.maximum(out, rows[:, offset : offset + width], out=out)
    return out


def _dilate_four_connected(mask: np.ndarray) -> np.ndarray:
    """One step of 4-connected binary dilation, for (H, W) bool."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _clean_up(
    background_like: np.ndarray,
    distance_sq: np.ndarray | None,
    config: MaskConfig,
) -> np.ndarray:
    """Turns background-coloured pixels into a clean foreground mask.

    Args:
      background_like: (H, W) bool, pixels that look like background.
      distance_sq: (H, W) squared colour distance of the unblurred image to the
        background, enabling the half-contrast peel of the outline (unblurred,
        so a sharp corner keeps its full contrast); None for alpha masks.
      config: Speck and hole thresholds.

    Returns:
      (H, W) bool foreground mask.
    """
    labels, _ = ndimage.label(background_like, structure=_FOUR_CONNECTED)
    on_border = np.zeros(labels.max() + 1, bool)
    on_border[labels[0]] = True
    on_border[labels[-1]] = True
    on_border[labels[:, 0]] = True
    on_border[labels[:, -1]] = True
    on_border[0] = False
    background = on_border[labels]

    # Holes are the enclosed background-coloured components. The large ones are
    # background seen through the product; the rest are filled below by simply
    # never becoming background.
    hole_sizes = np.bincount(labels.ravel())
    hole_sizes[0] = 0
    hole_sizes[on_border] = 0
    large = hole_sizes > config.max_hole_fraction * np.count_nonzero(
        ~background
    )
    if large.any():
        background |= large[labels]

    if distance_sq is not None and background.any():
        threshold = _max_filter(distance_sq, _PEEL_RADIUS)
        # Squared distances, so the contrast fraction is squared too.
        threshold *= _PEEL_CONTRAST**2
        weak = distance_sq < threshold
        for _ in range(config.outline_peel_layers):
            outline = _dilate_four_connected(background) & ~background
            background |= outline & weak

    foreground = ~background
    components, count = ndimage.label(foreground, structure=_EIGHT_CONNECTED)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        keep = sizes >= config.min_speck_fraction * sizes.max()
        keep[0] = False
        foreground = keep[components]
    return foreground


def _finish(
    mask: np.ndarray,
    background_rgb: tuple[int, int, int] | None,
    source: str,
    config: MaskConfig,
) -> ForegroundMask:
    """Wraps a mask with its coverage and status."""
    coverage = float(mask.mean())
    if coverage < config.empty_fraction:
        status = MaskStatus.EMPTY
    elif coverage > config.full_fraction:
        status = MaskStatus.FULL
    else:
        status = MaskStatus.OK
    return ForegroundMask(
        mask=mask,
        status=status,
        coverage=coverage,
        background_rgb=background_rgb,
        source=source,
    )
