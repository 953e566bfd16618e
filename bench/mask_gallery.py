r"""Draws catalogue images with their foreground masks in one grid PNG.

A visual check of `beau_tf.data.masks`: each tile shows the image with the
background tinted cyan, the mask outline in magenta, and a caption with the
coverage (red, with the status, when not OK). It also logs the OK/EMPTY/FULL
counts, the time per image as given, and the median time per image resized to
--time_at pixels square (the module aims at well under 50 ms for 512x512).

  python -m bench.mask_gallery \
    [--catalog_dir=../shared/data/grocery-store/dataset/iconic-images-and-descriptions] \
    [--out=/tmp/masks.png]

Without --catalog_dir it reads GroceryStore's 81 iconic images, and says it
is skipped when the shared copy is absent. Writes
bench/results/mask_gallery.json: one row per image (status, coverage) and
the counts and times under "summary". Figures: bench/RESULTS.md
("Augmentation").
"""

import collections
import os
import pathlib
import time

from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageDraw

from beau_tf.data import masks
from beau_tf.datasets.synthetic import catalogue as synthetic
from bench import harness

_CATALOG_DIR = flags.DEFINE_string(
    "catalog_dir",
    str(harness.GROCERY_ICONIC),
    "Folder searched recursively for catalogue images.",
)
_PATTERN = flags.DEFINE_string(
    "pattern", "*_Iconic.jpg", "Glob for the images under --catalog_dir."
)
_OUT = flags.DEFINE_string("out", "/tmp/masks.png", "Where to write the grid.")
_TILE = flags.DEFINE_integer("tile", 160, "Tile size in pixels.")
_COLUMNS = flags.DEFINE_integer("columns", 9, "Tiles per row.")
_TIME_AT = flags.DEFINE_integer(
    "time_at", 512, "Also time each image resized to this square size; 0 skips."
)
_ONLY_FLAGGED = flags.DEFINE_bool(
    "only_flagged", False, "Draw only images whose status is not OK."
)


def _smoke_catalogue(work_dir: str) -> str:
    return synthetic.write_synthetic_catalog(
        os.path.join(work_dir, "synthetic"),
        num_products=4,
        queries_per_product=0,
        num_backgrounds=0,
        image_size=64,
    ).catalog_dir


SMOKE = {
    "catalog_dir": _smoke_catalogue,
    "pattern": "*.png",
    "time_at": 64,
    "out": lambda work_dir: os.path.join(work_dir, "masks.png"),
}


def render_tile(
    image: Image.Image, result: masks.ForegroundMask, caption: str, tile: int
) -> Image.Image:
    """Returns one tile: image with tinted background, outline and caption.

    Args:
      image: The RGB catalogue image.
      result: Its mask.
      caption: Text under the image.
      tile: Tile size in pixels.

    Returns:
      A (tile, tile) RGB image.
    """
    rgb = np.asarray(image.convert("RGB")).astype(np.float32)
    mask = result.mask
    # Cyan-tinted background shows what was removed even on white images.
    cyan = np.array([0, 200, 255], np.float32)
    tinted = np.where(mask[..., None], rgb, 0.5 * rgb + 0.5 * cyan)
    inner = mask.copy()  # Erosion by shifts: a pixel is inner if all 4 are set.
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    outline = mask & ~inner
    tinted[outline] = (255, 0, 255)
    picture = Image.fromarray(tinted.astype(np.uint8)).resize(
        (tile, tile - 14), Image.NEAREST
    )
    canvas = Image.new("RGB", (tile, tile), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    colour = (0, 0, 0) if result.status == masks.MaskStatus.OK else (220, 0, 0)
    ImageDraw.Draw(canvas).text((2, tile - 13), caption, fill=colour)
    return canvas


def time_resized(paths: list[pathlib.Path], size: int) -> float:
    """Median seconds per mask for the images resized to (size, size)."""
    seconds = []
    for path in paths:
        array = np.asarray(
            Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
        )
        start = time.perf_counter()
        masks.extract_foreground_mask(array)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def main(argv):
    del argv
    if not os.path.isdir(_CATALOG_DIR.value):
        harness.skip(f"no catalogue folder {_CATALOG_DIR.value}")
        return
    paths = sorted(pathlib.Path(_CATALOG_DIR.value).rglob(_PATTERN.value))
    if not paths:
        raise ValueError(
            f"No {_PATTERN.value} under --catalog_dir={_CATALOG_DIR.value}."
        )
    counts = collections.Counter()
    tiles, rows = [], []
    seconds = 0.0
    for path in paths:
        image = Image.open(path)
        # Keep alpha when the file has it: the mask then comes from alpha.
        mode = "RGBA" if "A" in image.getbands() else "RGB"
        array = np.asarray(image.convert(mode))
        start = time.perf_counter()
        result = masks.extract_foreground_mask(array)
        seconds += time.perf_counter() - start
        counts[result.status.value] += 1
        rows.append(
            {
                "image": path.stem,
                "status": result.status.value,
                "coverage": float(result.coverage),
            }
        )
        logging.info(
            "%-40s %-5s coverage=%.3f background=%s",
            path.stem,
            result.status.value,
            result.coverage,
            result.background_rgb,
        )
        if _ONLY_FLAGGED.value and result.status == masks.MaskStatus.OK:
            continue
        caption = (
            f"{path.stem.removesuffix('_Iconic')[:14]} {result.coverage:.2f}"
        )
        if result.status != masks.MaskStatus.OK:
            caption += f" {result.status.value.upper()}"
        tiles.append(render_tile(image, result, caption, _TILE.value))
    summary = {
        "counts": dict(counts),
        "images": len(paths),
        "ms per image as given": 1000.0 * seconds / len(paths),
    }
    if _TIME_AT.value:
        summary[f"median ms per image at {_TIME_AT.value} px"] = (
            1000.0 * time_resized(paths, _TIME_AT.value)
        )
    print(", ".join(f"{name}: {value}" for name, value in summary.items()))
    if tiles:
        save_grid(tiles, _OUT.value)
        logging.info("Wrote %s.", _OUT.value)
    harness.write_results(rows, summary=summary, picture=_OUT.value)


def save_grid(tiles: list[Image.Image], out: str) -> None:
    """Pastes the tiles row by row into one PNG."""
    tile = _TILE.value
    columns = min(_COLUMNS.value, len(tiles))
    rows = -(-len(tiles) // columns)
    grid = Image.new("RGB", (columns * tile, rows * tile), "white")
    for i, picture in enumerate(tiles):
        row, column = divmod(i, columns)
        grid.paste(picture, (column * tile, row * tile))
    grid.save(out)


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
