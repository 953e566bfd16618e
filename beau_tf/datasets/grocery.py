r"""Converts the GroceryStoreDataset into beau_tf catalogue and query CSVs.

GroceryStoreDataset (Klasson et al., WACV 2019) has one clean "iconic" image per
product, like a retail catalogue, and in-store photos of the same products. This
converter writes, into `--out_dir`:

* `catalog.csv` (`item_id,path`): the 81 iconic images; the item id is the
  class name from `classes.csv` (e.g. "Golden-Delicious"); paths are absolute.
* `queries_val.csv`, `queries_train.csv` (`path,item_id`): the in-store photos
  listed in `val.txt` and `train.txt`, their fine class mapped to the same item
  ids. `queries_test.csv` too when the dataset has a `test.txt`.
* `queries_dev2.csv` (`path,item_id`): every 8th photo of `train.txt` (its
  lines 1, 9, 17, ...), the second development query set, and
  `photos_unlabelled.csv` (`path` only): the other `train.txt` photos, with
  no label, for training backgrounds and in-domain adaptation. dev2 photos
  are in neither of the latter uses.
* `coarse.csv` (`item_id,coarse_class_name,group`): the coarse class of each
  item, and its group, "packages" (cartons under
  `iconic-images-and-descriptions/Packages`) or "fruit_vegetables", for
  per-group evaluation.

The in-store labels are for evaluation only: training uses the catalogue.

Its command line is `beau_tf.convert_grocery`.
"""

import csv
import dataclasses
import os

from absl import logging

from beau_tf.data import catalog

_ICONIC_DIR = "iconic-images-and-descriptions"
_LAYOUT = ("classes.csv", "train.txt", "val.txt", _ICONIC_DIR + "/")
# test.txt is optional: the copy used for development holds that split out.
_SPLITS = ("val", "train", "test")
_REQUIRED_SPLITS = ("val", "train")

# Column names in classes.csv.
_NAME = "Class Name (str)"
_CLASS_ID = "Class ID (int)"
_COARSE_NAME = "Coarse Class Name (str)"
_COARSE_ID = "Coarse Class ID (int)"
_ICONIC_PATH = "Iconic Image Path (str)"

COARSE_COLUMNS = ("item_id", "coarse_class_name", "group")
# Every 8th train.txt photo, from the first, is the second development set.
DEV2_EVERY = 8


@dataclasses.dataclass(frozen=True)
class _Product:
    item_id: str
    coarse_name: str
    coarse_id: int
    iconic_path: str  # Absolute.
    group: str  # "packages" or "fruit_vegetables".


def convert_grocery_store(dataset_dir: str, out_dir: str) -> dict[str, str]:
    """Writes the catalogue, query and coarse-class CSVs for the dataset.

    Everything is read and checked before anything is written, and each file is
    written atomically, so a failure leaves `out_dir` as it was.

    Args:
      dataset_dir: The dataset's `dataset/` folder.
      out_dir: Output folder; created if missing. Existing files are replaced.

    Returns:
      Written file paths by name: "catalog", "queries_val", "queries_train",
      ("queries_test" when the dataset has test.txt), "queries_dev2",
      "photos_unlabelled" and "coarse".

    Raises:
      FileNotFoundError: `dataset_dir`, or a file it lists, does not exist.
      ValueError: `dataset_dir` is not the dataset's layout or a file in it is
        malformed.
    """
    dataset_dir = os.path.abspath(dataset_dir)
    _check_layout(dataset_dir)
    products = _read_classes(dataset_dir)
    queries = {}
    for split in _SPLITS:
        split_file = os.path.join(dataset_dir, f"{split}.txt")
        if split in _REQUIRED_SPLITS or os.path.isfile(split_file):
            queries[split] = _read_split(split_file, dataset_dir, products)

    by_id = sorted(products.values(), key=lambda p: p.item_id)
    tables = {
        "catalog": (
            catalog.CATALOG_COLUMNS,
            [(p.item_id, p.iconic_path) for p in by_id],
        )
    }
    for split, rows in queries.items():
        tables[f"queries_{split}"] = (catalog.QUERY_COLUMNS, rows)
    train = queries["train"]
    tables["queries_dev2"] = (catalog.QUERY_COLUMNS, train[::DEV2_EVERY])
    tables["photos_unlabelled"] = (
        ("path",),
        [(path,) for i, (path, _) in enumerate(train) if i % DEV2_EVERY],
    )
    tables["coarse"] = (
        COARSE_COLUMNS,
        [(p.item_id, p.coarse_name, p.group) for p in by_id],
    )

    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name, (header, rows) in tables.items():
        written[name] = os.path.join(out_dir, f"{name}.csv")
        catalog.write_csv(written[name], header, rows)
        logging.info("Wrote %s (%d rows).", written[name], len(rows))
    return written


def _check_layout(dataset_dir: str) -> None:
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(
            f"GroceryStoreDataset folder {dataset_dir} does not exist"
        )
    missing = [
        name
        for name in _LAYOUT
        if not os.path.exists(os.path.join(dataset_dir, name))
    ]
    if not missing:
        return
    hint = ""
    if os.path.isfile(os.path.join(dataset_dir, "dataset", "classes.csv")):
        hint = f"; did you mean {os.path.join(dataset_dir, 'dataset')}?"
    raise ValueError(
        f"{dataset_dir} is not GroceryStoreDataset's dataset/ folder: it lacks "
        f"{', '.join(missing)} (expected {', '.join(_LAYOUT)}){hint}"
    )


def _read_classes(dataset_dir: str) -> dict[int, _Product]:
    """Reads classes.csv into products keyed by fine class id."""
    path = os.path.join(dataset_dir, "classes.csv")
    products = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [
            c
            for c in (_NAME, _CLASS_ID, _COARSE_NAME, _COARSE_ID, _ICONIC_PATH)
            if c not in (reader.fieldnames or ())
        ]
        if missing:
            raise ValueError(
                f"{path}, line 1: header lacks column(s) "
                f"{', '.join(repr(c) for c in missing)}"
            )
        names = {}
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            class_id = _parse_int(row[_CLASS_ID], where, _CLASS_ID)
            name = (row[_NAME] or "").strip()
            if not name:
                raise ValueError(f"{where}: empty {_NAME!r}")
            if class_id in products or name in names:
                raise ValueError(
                    f"{where}: class {class_id} {name!r} is listed twice"
                )
            names[name] = class_id
            iconic = (row[_ICONIC_PATH] or "").strip().lstrip("/")
            parts = iconic.split("/")
            if len(parts) < 3 or parts[0] != _ICONIC_DIR:
                raise ValueError(
                    f"{where}: iconic image path {row[_ICONIC_PATH]!r} is not under "
                    f"/{_ICONIC_DIR}/<group>/"
                )
            iconic_path = os.path.join(dataset_dir, *parts)
            if not os.path.isfile(iconic_path):
                raise FileNotFoundError(
                    f"{where}: iconic image {iconic_path} does not exist"
                )
            products[class_id] = _Product(
                item_id=name,
                coarse_name=(row[_COARSE_NAME] or "").strip(),
                coarse_id=_parse_int(row[_COARSE_ID], where, _COARSE_ID),
                iconic_path=iconic_path,
                group=(
                    "packages" if parts[1] == "Packages" else "fruit_vegetables"
                ),
            )
    if not products:
        raise ValueError(f"{path} lists no classes")
    return products


def _read_split(
    split_file: str, dataset_dir: str, products: dict[int, _Product]
) -> list[tuple[str, str]]:
    """Reads a `path, fine_id, coarse_id` list into (path, item_id) rows."""
    rows = []
    seen = {}
    missing = []
    with open(split_file, newline="", encoding="utf-8") as f:
        for line, fields in enumerate(csv.reader(f, skipinitialspace=True), 1):
            if not fields or not "".join(fields).strip():
                continue
            where = f"{split_file}, line {line}"
            if len(fields) != 3:
                raise ValueError(
                    f"{where}: expected 'path, fine_id, coarse_id', got "
                    f"{fields!r}"
                )
            relative, fine, coarse = (field.strip() for field in fields)
            product = products.get(_parse_int(fine, where, "fine class id"))
            if product is None:
                raise ValueError(
                    f"{where}: fine class id {fine} is not in classes.csv"
                )
            if (
                _parse_int(coarse, where, "coarse class id")
                != product.coarse_id
            ):
                raise ValueError(
                    f"{where}: coarse class id {coarse} contradicts classes.csv, which "
                    f"gives {product.coarse_id} for {product.item_id}"
                )
            path = os.path.join(dataset_dir, relative)
            if path in seen:
                raise ValueError(
                    f"{where}: {relative} is already listed on line "
                    f"{seen[path]}"
                )
            seen[path] = line
            if not os.path.isfile(path):
                missing.append(f"line {line}: {path}")
            rows.append((path, product.item_id))
    if missing:
        raise FileNotFoundError(
            f"{split_file} lists {len(missing)} image(s) that do not exist "
            f"({'; '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})"
        )
    if not rows:
        raise ValueError(f"{split_file} lists no images")
    logging.info(
        "%s: %d photos of %d products.",
        split_file,
        len(rows),
        len({item_id for _, item_id in rows}),
    )
    return rows


def _parse_int(value: str | None, where: str, what: str) -> int:
    try:
        return int((value or "").strip())
    except ValueError:
        raise ValueError(
            f"{where}: {what} {value!r} is not an integer"
        ) from None
