"""A synthetic catalogue the project generates itself: studio shots and queries.

beau_tf learns from clean catalogue images (one product on white) and must find
those products in shoppers' photos. This module writes a deterministic
stand-in for such data, so the demo and the tests need no download.
`write_synthetic_catalog` writes, with CSV indexes:

- catalogue images, drawn by `products.render_product`;
- queries, drawn by `scenes.render_query`, each with the true mask of its
  product (`scenes.render_query_and_mask`), for scoring predicted masks;
- product-free backgrounds, drawn by `scenes.render_background`.

The files are built in a staging folder and renamed into place
(`beau_tf.common.files.staged_folder`).

Its command line is `beau_tf.make_synthetic`.
"""

import csv
import dataclasses
import json
import os

from absl import logging
import numpy as np
from PIL import Image

from beau_tf.common import files
from beau_tf.datasets.synthetic import products
from beau_tf.datasets.synthetic import scenes

_GENERATOR = "beau_tf.datasets.synthetic.catalogue"
# Bump when the rendering (every module of this package but this one)
# changes, so stale catalogues on disk are regenerated.
# 2: the queries' true masks (query_masks/, queries.csv's mask_path).
_FORMAT_VERSION = 2
_MANIFEST = "manifest.json"
_CATALOG_DIR = "catalog"
_QUERIES_DIR = "queries"
_QUERY_MASKS_DIR = "query_masks"
_BACKGROUNDS_DIR = "backgrounds"
_CATALOG_CSV, _QUERIES_CSV = "catalog.csv", "queries.csv"
_OUR_ENTRIES = frozenset(
    {
        _MANIFEST,
        _CATALOG_DIR,
        _QUERIES_DIR,
        _QUERY_MASKS_DIR,
        _BACKGROUNDS_DIR,
        _CATALOG_CSV,
        _QUERIES_CSV,
    }
)
_JPEG_QUALITY = 92


@dataclasses.dataclass(frozen=True)
class SyntheticCatalog:
    """Where `write_synthetic_catalog` put its files.

    Attributes:
      catalog_dir: `<out>/catalog`, one `<item_id>.png` per product on white.
      catalog_csv: `<out>/catalog.csv`, columns `item_id,path`, paths relative
        to the CSV.
      queries_csv: `<out>/queries.csv`, columns `path,item_id,mask_path`,
        paths relative to the CSV (`queries/q0000.jpg`, ...; names do not
        leak the item id); `mask_path` is the query's true product mask
        (`query_masks/q0000.png`, 0 or 255, the query's size).
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


def read_query_masks(queries_csv: str) -> dict[str, str]:
    """The true product mask of each query photo a catalogue lists.

    Args:
      queries_csv: a `SyntheticCatalog.queries_csv`.

    Returns:
      Query photo path -> its mask's path, both absolute.

    Raises:
      ValueError: the CSV has no mask_path column (a catalogue written before
        masks were; `write_synthetic_catalog` rewrites it).
    """
    folder = os.path.dirname(os.path.abspath(queries_csv))
    with open(queries_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "mask_path" not in rows[0]:
        raise ValueError(
            f"{queries_csv} has no mask_path column; write the catalogue "
            "again with write_synthetic_catalog (python -m "
            "beau_tf.make_synthetic), which adds the true masks."
        )
    return {
        os.path.abspath(os.path.join(folder, row["path"])): os.path.abspath(
            os.path.join(folder, row["mask_path"])
        )
        for row in rows
    }


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
        _QUERY_MASKS_DIR: manifest.get("num_products", -1)
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
    for d in (_CATALOG_DIR, _QUERIES_DIR, _QUERY_MASKS_DIR, _BACKGROUNDS_DIR):
        os.makedirs(os.path.join(root, d))
    catalog_rows = []
    for p in range(num_products):
        path = f"{_CATALOG_DIR}/{_item_id(p)}.png"
        Image.fromarray(products.render_product(p, size, seed)).save(
            os.path.join(root, path), format="PNG"
        )
        catalog_rows.append((_item_id(p), path))
    _write_csv(
        os.path.join(root, _CATALOG_CSV), ("item_id", "path"), catalog_rows
    )
    query_rows = []
    for p in range(num_products):
        for q in range(manifest["queries_per_product"]):
            name = f"q{len(query_rows):04d}"
            path = f"{_QUERIES_DIR}/{name}.jpg"
            mask_path = f"{_QUERY_MASKS_DIR}/{name}.png"
            image, mask = scenes.render_query_and_mask(
                p, num_products, q, size, seed
            )
            Image.fromarray(image).save(
                os.path.join(root, path), format="JPEG", quality=_JPEG_QUALITY
            )
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                os.path.join(root, mask_path), format="PNG"
            )
            query_rows.append((path, _item_id(p), mask_path))
    _write_csv(
        os.path.join(root, _QUERIES_CSV),
        ("path", "item_id", "mask_path"),
        query_rows,
    )
    for b in range(manifest["num_backgrounds"]):
        Image.fromarray(scenes.render_background(b, size, seed)).save(
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
      query_masks/q0000.png .. where each photo's product shows (0 or 255)
      queries.csv              path,item_id,mask_path
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
    products.check_size_and_seed(image_size, seed)
    out_dir = os.path.normpath(out_dir)
    wanted = _manifest(
        num_products, queries_per_product, num_backgrounds, image_size, seed
    )
    if _check_replaceable(out_dir, wanted) is not None:
        logging.info("Reusing the synthetic catalogue in %s.", out_dir)
        return _catalog_at(out_dir, wanted)
    # Anything at out_dir now is empty or one of ours (checked above).
    with files.staged_folder(out_dir, replace=True) as staging:
        _write_files(staging, wanted)
    logging.info(
        "Wrote %d products, %d queries and %d backgrounds to %s.",
        num_products,
        num_products * queries_per_product,
        num_backgrounds,
        out_dir,
    )
    return _catalog_at(out_dir, wanted)
