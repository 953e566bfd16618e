"""Catalogue images become product sprites: decoded once, masked once.

A sprite is the product cut out of its catalogue image: cropped to its mask's
bounding box, scaled so its longest side spans the sprite, centred, with the
mask as alpha, `(S, S, 4)` uint8. The augmentation pastes sprites, so each
catalogue image is decoded and masked exactly once per run, never once per
augmented pair.

Images that cannot be used are skipped, each with a warning naming the file,
and counted in a `PreparationReport`:
- undecodable files (corrupt, truncated, empty, not an image, too small);
- masks that come out empty (no product found against the background);
- masks that cover almost the whole frame (no clean background: a lifestyle
  shot, or a product photographed edge to edge). With
  `bad_mask_policy="full_frame"` these are kept with the whole frame as the
  product instead; the default, "skip", never trains on a mask it distrusts.
"""

import collections
import concurrent.futures
import dataclasses
import os

from absl import logging
import numpy as np
from PIL import Image

from beau_tf.common import progress
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import decode
from beau_tf.data import masks as masks_lib

BAD_MASK_POLICIES = ("skip", "full_frame")
# Masks are estimated at up to this multiple of the sprite size: enough detail
# for the crop, and bounded work on 12000 px originals.
_DECODE_OVERSAMPLING = 2


@dataclasses.dataclass(frozen=True)
class ProductSet:
    """Prepared products, aligned by index.

    Attributes:
      sprites: `(N, S, S, 4)` uint8 RGBA; alpha 255 on the product, 0 elsewhere.
      labels: `(N,)` int32 catalogue labels (dense over the whole catalogue, so
        a skipped image leaves its label unused rather than shifting others).
      item_ids: `(N,)` str catalogue item ids.
    """

    sprites: np.ndarray
    labels: np.ndarray
    item_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def sprite_size(self) -> int:
        return self.sprites.shape[1]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One catalogue image that was skipped or kept with a caveat."""

    path: str
    kind: str  # "undecodable", "empty_mask" or "full_mask"
    detail: str


@dataclasses.dataclass(frozen=True)
class PreparationReport:
    """What happened to each input image."""

    what: str  # e.g. "catalogue images"
    total: int
    prepared: int
    skipped: tuple[Problem, ...]
    kept_full_frame: tuple[Problem, ...]

    def counts(self) -> dict[str, int]:
        """Skipped images per kind of problem."""
        return dict(collections.Counter(p.kind for p in self.skipped))

    def summary(self) -> str:
        """One line for the log: prepared, skipped by kind, kept as full frame."""
        parts = [f"{self.prepared}/{self.total} {self.what} prepared"]
        for kind, count in sorted(self.counts().items()):
            parts.append(f"{count} skipped ({kind})")
        if self.kept_full_frame:
            parts.append(
                f"{len(self.kept_full_frame)} kept as full frame "
                "(mask covered the whole image)"
            )
        return ", ".join(parts)


def make_sprite(rgb: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Cuts the product out of an image into a centred `(size, size, 4)` sprite.

    Args:
      rgb: `(H, W, 3)` uint8 image.
      mask: `(H, W)` bool foreground, not empty.
      size: sprite side.

    Returns:
      `(size, size, 4)` uint8; the product's longest side spans `size`.
    """
    box = masks_lib.bounding_box(mask)
    if box is None:
        raise ValueError("make_sprite needs a non-empty mask.")
    top, left, bottom, right = box
    height, width = bottom - top, right - left
    scale = size / max(height, width)
    new_h = min(size, max(1, round(height * scale)))
    new_w = min(size, max(1, round(width * scale)))
    crop = Image.fromarray(rgb[top:bottom, left:right])
    colour = np.asarray(crop.resize((new_w, new_h), Image.Resampling.LANCZOS))
    # Nearest keeps the mask binary.
    alpha = (
        np.asarray(
            Image.fromarray(mask[top:bottom, left:right]).resize(
                (new_w, new_h), Image.Resampling.NEAREST
            ),
            dtype=np.uint8,
        )
        * 255
    )
    pad_y, pad_x = (size - new_h) // 2, (size - new_w) // 2
    padding = ((pad_y, size - new_h - pad_y), (pad_x, size - new_w - pad_x))
    # Edge padding: the warp's bilinear rim samples the catalogue's own
    # background colour next to the product, never an arbitrary fill.
    colour = np.pad(colour, padding + ((0, 0),), mode="edge")
    alpha = np.pad(alpha, padding)
    return np.concatenate([colour, alpha[..., None]], axis=-1)


def _prepare_one(
    item: catalog_lib.CatalogItem,
    size: int,
    mask_config: masks_lib.MaskConfig,
    bad_mask_policy: str,
) -> tuple[np.ndarray | None, Problem | None]:
    """Sprite for one catalogue item, or the problem that stopped it."""
    try:
        image = decode.load_image(
            item.path, max_side=_DECODE_OVERSAMPLING * size
        )
    except decode.ImageDecodeError as error:
        return None, Problem(item.path, "undecodable", str(error))
    foreground = masks_lib.extract_foreground_mask(
        image.rgb, image.alpha, mask_config
    )
    status = foreground.status
    if status == masks_lib.MaskStatus.EMPTY:
        return None, Problem(
            item.path,
            "empty_mask",
            f"{item.path}: no product found against the background "
            f"(foreground {foreground.coverage:.1%} of the image)",
        )
    if status == masks_lib.MaskStatus.FULL:
        problem = Problem(
            item.path,
            "full_mask",
            f"{item.path}: the foreground covers {foreground.coverage:.1%} of the "
            "image; no clean background to cut the product from",
        )
        if bad_mask_policy == "skip":
            return None, problem
        full = np.ones(foreground.mask.shape, dtype=bool)
        return make_sprite(image.rgb, full, size), problem
    return make_sprite(image.rgb, foreground.mask, size), None


def prepare_products(
    items: list[catalog_lib.CatalogItem],
    sprite_size: int,
    mask_config: masks_lib.MaskConfig = masks_lib.MaskConfig(),
    bad_mask_policy: str = "skip",
    num_workers: int | None = None,
) -> tuple[ProductSet, PreparationReport]:
    """Decodes and masks every catalogue image once, into sprites.

    Args:
      items: the catalogue, from `beau_tf.data.catalog.list_catalog`.
      sprite_size: sprite side; the augmentation's output size.
      mask_config: foreground-mask parameters.
      bad_mask_policy: "skip" or "full_frame", for masks covering the whole
        image (empty masks and undecodable files are always skipped).
      num_workers: decoding threads (PIL releases the GIL while decoding);
        defaults to the number of CPUs.

    Returns:
      `(products, report)`.

    Raises:
      ValueError: for a bad policy, or when no catalogue image could be used
        (the message lists why the first few failed).
    """
    if bad_mask_policy not in BAD_MASK_POLICIES:
        raise ValueError(
            f"bad_mask_policy={bad_mask_policy!r}; one of "
            f"{BAD_MASK_POLICIES} expected."
        )
    workers = num_workers or os.cpu_count() or 1
    sprites, labels, item_ids = [], [], []
    skipped, kept_full_frame = [], []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = pool.map(
            lambda item: _prepare_one(
                item, sprite_size, mask_config, bad_mask_policy
            ),
            items,
        )
        for item, (sprite, problem) in zip(
            items, progress.track(results, len(items), "Preparing catalogue")
        ):
            if problem is not None:
                logging.warning("%s", problem.detail)
                (skipped if sprite is None else kept_full_frame).append(problem)
            if sprite is not None:
                sprites.append(sprite)
                labels.append(item.label)
                item_ids.append(item.item_id)
    report = PreparationReport(
        "catalogue images",
        len(items),
        len(sprites),
        tuple(skipped),
        tuple(kept_full_frame),
    )
    logging.info("%s", report.summary())
    if not sprites:
        reasons = "; ".join(p.detail for p in skipped[:3])
        raise ValueError(
            f"None of the {len(items)} catalogue images could be used "
            f"({report.summary()}). First problems: {reasons}"
        )
    products = ProductSet(
        sprites=np.stack(sprites),  # (N, S, S, 4)
        labels=np.asarray(labels, dtype=np.int32),
        item_ids=np.asarray(item_ids, dtype=object),
    )
    return products, report
