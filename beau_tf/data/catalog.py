"""What a catalogue is: one image per product, and the queries that test it.

A catalogue is read from either

* a directory of images, searched recursively; each image is one product and
  its item id is its path below the directory, without extension, with "/"
  separators (`shoes/red-42.jpg` -> "shoes/red-42"). A flat folder of
  `<id>.jpg` files, as in Perfect-500K, gives the item ids "<id>"; or
* a CSV file with the header `item_id,path` (paths relative to the CSV's
  folder, or absolute). Further columns are ignored.

Items come back sorted by item id, each with a dense integer label (its index
in that order), so the same catalogue always gets the same labels. Listing a
catalogue never decodes an image: that happens once, later, in the pipelines.

Query lists for evaluation are CSV files with the header `path,item_id`.
`write_csv` writes any of these files atomically.
"""

import csv
import dataclasses
import os
from typing import Iterable, Sequence

from absl import logging

from beau_tf.common import files
from beau_tf.data import decode

CATALOG_COLUMNS = ("item_id", "path")
QUERY_COLUMNS = ("path", "item_id")

# How many missing files an error lists before summarising the rest.
_MAX_LISTED = 5


@dataclasses.dataclass(frozen=True)
class CatalogItem:
    """One product of the catalogue.

    Attributes:
      item_id: Stable product id.
      path: Absolute path of the product's catalogue image.
      label: Dense index 0..N-1 of the item in sorted item_id order.
    """

    item_id: str
    path: str
    label: int


@dataclasses.dataclass(frozen=True)
class Query:
    """A query photo and the product it shows.

    Attributes:
      path: Absolute path of the query image.
      item_id: Id of the catalogue item the query should retrieve.
    """

    path: str
    item_id: str


def list_catalog(source: str) -> list[CatalogItem]:
    """Lists a catalogue's items without decoding any image.

    Args:
      source: A directory of images, or a CSV file with the header
        `item_id,path` (see the module docstring).

    Returns:
      The items sorted by item_id, labelled 0..N-1 in that order.

    Raises:
      FileNotFoundError: `source`, or an image a CSV lists, does not exist.
      ValueError: Two images map to one item id, the CSV is malformed, or the
        catalogue is empty.
    """
    if os.path.isdir(source):
        id_to_path = _ids_from_directory(source)
    elif os.path.isfile(source):
        if not source.lower().endswith(".csv"):
            raise ValueError(
                f"catalogue source {source} is neither a directory of images nor a "
                "CSV file (header item_id,path expected)"
            )
        id_to_path = _ids_from_csv(source)
    else:
        raise FileNotFoundError(
            f"catalogue source {source} does not exist (a directory of images or "
            "a CSV file with header item_id,path expected)"
        )
    items = [
        CatalogItem(item_id=item_id, path=id_to_path[item_id], label=label)
        for label, item_id in enumerate(sorted(id_to_path))
    ]
    logging.info("Catalogue %s: %d items.", source, len(items))
    return items


def read_queries(csv_path: str) -> list[Query]:
    """Reads an evaluation query list.

    Args:
      csv_path: CSV file with the header `path,item_id`; relative paths are
        resolved against the CSV's folder. Further columns are ignored.

    Returns:
      The queries, in file order.

    Raises:
      FileNotFoundError: `csv_path`, or an image it lists, does not exist.
      ValueError: The CSV is malformed or lists the same image twice.
    """
    rows = _read_rows(csv_path, QUERY_COLUMNS)
    if not rows:
        raise ValueError(
            f"{csv_path} lists no queries (rows of path,item_id "
            "expected after the header)"
        )
    base_dir = os.path.dirname(os.path.abspath(csv_path))
    queries = []
    first_line = {}
    for line, row in rows:
        path = _resolve(row["path"], base_dir)
        if path in first_line:
            raise ValueError(
                f"{csv_path}, line {line}: {path} is already listed on line "
                f"{first_line[path]}; each query image may appear once"
            )
        first_line[path] = line
        queries.append(Query(path=path, item_id=row["item_id"]))
    _check_files_exist(
        csv_path, [(line, path) for path, line in first_line.items()]
    )
    logging.info(
        "Queries %s: %d images of %d items.",
        csv_path,
        len(queries),
        len({q.item_id for q in queries}),
    )
    return queries


def write_csv(
    path: str, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Writes a CSV file atomically.

    The rows go to a temporary file in the same directory, which then replaces
    `path` in one step: readers never see a half-written file, and a failure
    leaves any previous file untouched.

    Args:
      path: File to write; its directory must exist.
      header: Column names.
      rows: One sequence of values per row, as long as `header`.

    Raises:
      FileNotFoundError: The directory of `path` does not exist.
      ValueError: A row's length differs from the header's.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot write {path}: directory {directory} does not exist"
        )
    with files.atomic_path(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            for index, row in enumerate(rows):
                row = list(row)
                if len(row) != len(header):
                    raise ValueError(
                        f"cannot write {path}: row {index} has {len(row)} values "
                        f"{row!r}, but the header {list(header)!r} has {len(header)}"
                    )
                writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())


def _ids_from_directory(root: str) -> dict[str, str]:
    """Maps item ids to absolute image paths for a directory catalogue."""
    id_to_path = {}
    for path in decode.list_image_files(root):
        relative = os.path.splitext(os.path.relpath(path, root))[0]
        item_id = relative.replace(os.sep, "/")
        path = os.path.abspath(path)
        if item_id in id_to_path:
            raise ValueError(
                f"{id_to_path[item_id]} and {path} both map to item_id "
                f"{item_id!r}; keep one image per product (remove or rename one)"
            )
        id_to_path[item_id] = path
    if not id_to_path:
        raise ValueError(
            f"no images found under {root} ({', '.join(decode.IMAGE_EXTENSIONS)} "
            "expected)"
        )
    return id_to_path


def _ids_from_csv(csv_path: str) -> dict[str, str]:
    """Maps item ids to absolute image paths for a CSV catalogue."""
    rows = _read_rows(csv_path, CATALOG_COLUMNS)
    if not rows:
        raise ValueError(
            f"{csv_path} lists no catalogue images (rows of "
            "item_id,path expected after the header)"
        )
    base_dir = os.path.dirname(os.path.abspath(csv_path))
    id_to_path = {}
    id_to_line = {}
    for line, row in rows:
        item_id = row["item_id"]
        _check_item_id(item_id, f"{csv_path}, line {line}")
        if item_id in id_to_line:
            raise ValueError(
                f"{csv_path}, line {line}: item_id {item_id!r} is already listed on "
                f"line {id_to_line[item_id]}; a catalogue has one image per product, "
                "so keep one of them"
            )
        id_to_line[item_id] = line
        id_to_path[item_id] = _resolve(row["path"], base_dir)
    _check_files_exist(
        csv_path, [(id_to_line[i], p) for i, p in id_to_path.items()]
    )
    return id_to_path


def _check_item_id(item_id: str, where: str) -> None:
    """Raises ValueError for an id with an empty, "." or ".." segment.

    Ids become URL paths (the search page's `/items/<id>/image`), where a
    browser resolves such segments: "a/../b" would show item "b".
    """
    segments = item_id.split("/")
    odd = [segment for segment in segments if segment in ("", ".", "..")]
    if odd or "\\" in item_id:
        shown = repr(odd[0]) if odd else "a backslash"
        raise ValueError(
            f"{where}: item_id {item_id!r} has {shown} as a path segment; ids "
            "are paths in URLs (the search page's thumbnails), so use names "
            "separated by single '/', without '.' or '..' segments"
        )


def _read_rows(
    csv_path: str, columns: Sequence[str]
) -> list[tuple[int, dict[str, str]]]:
    """Reads a CSV whose header has `columns`, checking every row.

    Args:
      csv_path: The CSV file.
      columns: Columns that must be in the header and non-empty in every row.

    Returns:
      (line number, {column: stripped value}) for each non-blank row.

    Raises:
      FileNotFoundError: `csv_path` does not exist.
      ValueError: The header lacks a column, or a row lacks a value.
    """
    expected = ",".join(columns)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(
            f"CSV file {csv_path} does not exist (header {expected} expected)"
        )
    rows = []
    # utf-8-sig drops the byte-order mark that spreadsheet programs write.
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [name.strip() for name in reader.fieldnames or ()]
        if not header:
            raise ValueError(
                f"{csv_path} is empty (header {expected} expected)"
            )
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(
                f"{csv_path}, line 1: header {','.join(header)} lacks column(s) "
                f"{', '.join(missing)} (header {expected} expected)"
            )
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            if None in row:
                raise ValueError(
                    f"{csv_path}, line {line}: more values than the header's "
                    f"{len(header)} columns (quote values that contain commas)"
                )
            values = {}
            for column in columns:
                value = (row[column] or "").strip()
                if not value:
                    raise ValueError(
                        f"{csv_path}, line {line}: empty or missing {column} (every row "
                        f"needs {expected})"
                    )
                values[column] = value
            rows.append((line, values))
    return rows


def _resolve(path: str, base_dir: str) -> str:
    """Makes a listed path absolute; relative paths start at `base_dir`."""
    return os.path.abspath(os.path.join(base_dir, path))


def _check_files_exist(csv_path: str, entries: list[tuple[int, str]]) -> None:
    """Raises FileNotFoundError listing the entries whose file is missing."""
    missing = [
        (line, path) for line, path in entries if not os.path.isfile(path)
    ]
    if not missing:
        return
    listed = "; ".join(
        f"line {line}: {path}{' (a folder)' if os.path.isdir(path) else ''}"
        for line, path in missing[:_MAX_LISTED]
    )
    more = (
        f" and {len(missing) - _MAX_LISTED} more"
        if len(missing) > _MAX_LISTED
        else ""
    )
    raise FileNotFoundError(
        f"{csv_path} lists {len(missing)} image file(s) that do not exist "
        "or are folders "
        f"({listed}{more}); relative paths are resolved against "
        f"{os.path.dirname(os.path.abspath(csv_path))}"
    )


def list_photos(source: str) -> list[str]:
    """Unlabelled photos: a folder (searched recursively) or a CSV with a
    `path` column (other columns, such as item_id, are ignored; relative
    paths start at the CSV's folder).

    Raises:
      FileNotFoundError: `source`, or a listed photo, does not exist.
      ValueError: a CSV without a path column, or no photo at all.
    """
    if os.path.isdir(source):
        paths = decode.list_image_files(source)
    else:
        rows = _read_rows(source, ("path",))
        base_dir = os.path.dirname(os.path.abspath(source))
        entries = [
            (line, _resolve(row["path"], base_dir)) for line, row in rows
        ]
        _check_files_exist(source, entries)
        paths = [path for _, path in entries]
    if not paths:
        raise ValueError(
            f"{source} holds no photos (a folder of images or a CSV with a "
            "path column expected)"
        )
    return paths
