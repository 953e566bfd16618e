"""Real background photos for the augmentation, decoded once into memory.

Any images will do (found recursively): shelves, counters, rooms, street
scenes. Each is decoded once, its shorter side scaled to `size` and centre
cropped square; the augmentation then takes random crops of these.
"""

import concurrent.futures
import os

from absl import logging
import numpy as np
from PIL import Image

from beau_tf.common import progress
from beau_tf.data import catalog
from beau_tf.data import decode
from beau_tf.data import products as products_lib


def stored_size(image_size: int) -> int:
    """Side at which backgrounds are kept: room for crops of `image_size`."""
    return round(1.25 * image_size)


def fit_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Scales the shorter side to `size` and centre-crops `(size, size, 3)`."""
    height, width = rgb.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(
        size, round(height * scale)
    )
    resized = np.asarray(
        Image.fromarray(rgb).resize(
            (new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=2.0
        )
    )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def _load_one(
    path: str, size: int
) -> tuple[np.ndarray | None, products_lib.Problem | None]:
    try:
        # The longest side may be up to ~3x the shorter in panoramas; decode
        # generously, then fit.
        image = decode.load_image(path, max_side=3 * size)
    except decode.ImageDecodeError as error:
        return None, products_lib.Problem(path, "undecodable", str(error))
    return fit_square(image.rgb, size), None


def load_backgrounds(
    background_dir: str,
    size: int,
    max_count: int | None = None,
    seed: int = 0,
    num_workers: int | None = None,
) -> tuple[np.ndarray, products_lib.PreparationReport]:
    """Decodes background photos into a `(N, size, size, 3)` uint8 array.

    Args:
      background_dir: folder searched recursively for images, or a CSV
        with a path column (see `catalog.list_photos`).
      size: side of each stored background (a little above the training size
        leaves room for random crops).
      max_count: keep at most this many (a seeded random subset), bounding
        memory at `max_count * size * size * 3` bytes.
      seed: chooses the subset.
      num_workers: decoding threads; defaults to the number of CPUs.

    Returns:
      `(backgrounds, report)`.

    Raises:
      FileNotFoundError: `background_dir` does not exist.
      ValueError: no usable image in it.
    """
    paths = seeded_subset(catalog.list_photos(background_dir), max_count, seed)
    backgrounds, _, report = load_photos(
        paths, size, "background images", num_workers
    )
    if not len(backgrounds):
        raise ValueError(
            f"No usable background image under {background_dir} "
            f"({report.summary()}); JPEG, PNG, BMP, GIF, WebP or TIFF expected."
        )
    return backgrounds, report


def seeded_subset(
    paths: list[str], max_count: int | None, seed: int
) -> list[str]:
    """At most `max_count` of `paths` (all when None), a random subset drawn
    from `seed`, in their original order."""
    if max_count is None or len(paths) <= max_count:
        return paths
    chosen = np.random.default_rng(seed).choice(
        len(paths), max_count, replace=False
    )
    return [paths[i] for i in sorted(chosen)]


def load_photos(
    paths: list[str],
    size: int,
    what: str = "photos",
    num_workers: int | None = None,
) -> tuple[np.ndarray, list[str], products_lib.PreparationReport]:
    """Decodes photos into a `(N, size, size, 3)` uint8 array (each scaled
    to `size` on its shorter side and centre-cropped), skipping unusable
    files with a warning that names them.

    Args:
      paths: image files.
      size: side of each stored photo.
      what: what the photos are, for the progress line and the report.
      num_workers: decoding threads; defaults to the number of CPUs.

    Returns:
      `(photos (N, size, size, 3), the N paths kept, report)`; N may be 0.
    """
    loaded, kept, skipped = [], [], []
    workers = num_workers or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda path: _load_one(path, size), paths)
        for path, (photo, problem) in zip(
            paths,
            progress.track(results, len(paths), f"Loading {what}"),
        ):
            if problem is not None:
                logging.warning("%s", problem.detail)
                skipped.append(problem)
            else:
                loaded.append(photo)
                kept.append(path)
    report = products_lib.PreparationReport(
        what, len(paths), len(loaded), tuple(skipped), ()
    )
    logging.info("%s", report.summary())
    photos = (
        np.stack(loaded) if loaded else np.zeros((0, size, size, 3), np.uint8)
    )
    return photos, kept, report  # (N, size, size, 3)
