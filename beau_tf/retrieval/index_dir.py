"""The index folder: everything search needs, written whole or not at all.

```
<index_dir>/
  manifest.json    format version, the model it was built from (name, version,
                   signature and model fingerprints, embedding size), item
                   count, ScaNN build parameters and version, creation time,
                   the size and SHA-256 of every other file below, and
                   (built with a target recall) "tuning": the target, the
                   search setting chosen, the recall it measured and on
                   how many queries
  items.csv        item_id,path: row i of the embeddings is item i
  embeddings.npy   (N, D) float32 catalogue embeddings (exact search,
                   evaluation, DBA)
  scann/           ScaNN's serialized searcher (relative paths, so it moves)
```

`write_index` stages everything in a hidden sibling folder and renames it into
place; an existing non-empty folder is never overwritten. `load_index`
verifies every checksum before reading anything else, since ScaNN crashes the
process (segmentation fault) on a corrupt file instead of raising.
"""

import csv
import dataclasses
import hashlib
import json
import os

from absl import logging
import numpy as np

from beau_tf.common import files
from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import scann_index

FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
ITEMS_FILE = "items.csv"
EMBEDDINGS_FILE = "embeddings.npy"
SCANN_DIR = "scann"
_REBUILD = scann_index.REBUILD_HINT


@dataclasses.dataclass
class EmbeddedCatalog:
    """Catalogue embeddings with their ids and image paths, row-aligned."""

    embeddings: np.ndarray  # (N, D) float32, L2-normalised
    item_ids: list[str]
    paths: list[str]
    model_identity: dict


@dataclasses.dataclass
class IndexBundle:
    """A loaded index folder."""

    index: scann_index.CatalogIndex
    embeddings: np.ndarray  # (N, D)
    paths: dict[str, str]  # item id -> catalogue image
    directory: str

    @property
    def manifest(self) -> dict:
        return self.index.manifest


def check_free(index_dir: str) -> None:
    """Raises unless `index_dir` can be written: missing, or an empty folder.

    Index building calls it before embedding a single image, so a taken
    folder costs nothing.

    Raises:
        FileExistsError: `index_dir` is a file, or a non-empty folder.
    """
    if os.path.exists(index_dir) and not os.path.isdir(index_dir):
        raise FileExistsError(
            f"{index_dir} is a file; --index_dir must name a folder."
        )
    if os.path.isdir(index_dir) and os.listdir(index_dir):
        raise FileExistsError(
            f"{index_dir} exists and is not empty; an index is never "
            "overwritten (remove it or pass another --index_dir)."
        )
    files.check_writable(index_dir, "--index_dir", folder=True)


def build_and_save(
    embedded: EmbeddedCatalog,
    index_dir: str,
    params: scann_index.IndexParams | None = None,
    target_recall: float | None = None,
) -> str:
    """Builds the ScaNN index over `embedded` and writes its folder.

    Args:
        embedded: the catalogue's embeddings, ids and paths.
        index_dir: the folder to create (missing or empty).
        params: ScaNN's configuration; `choose_index_params` by default.
        target_recall: when given, `scann_index.tune_search` picks the
            cheapest leaves-to-search and reorder reaching this recall@k on
            a sample of the catalogue, recorded in the manifest.
    """
    check_free(index_dir)
    index = scann_index.build_index(
        embedded.embeddings, embedded.item_ids, embedded.model_identity, params
    )
    if target_recall is not None:
        index = scann_index.tune_search(
            index, embedded.embeddings, target_recall
        )
    return write_index(index, embedded.embeddings, embedded.paths, index_dir)


def write_index(
    index: scann_index.CatalogIndex,
    embeddings: np.ndarray,
    paths: list[str],
    index_dir: str,
) -> str:
    """Writes the index folder atomically; returns `index_dir`.

    Args:
        index: the searcher, row i for `index.item_ids[i]`.
        embeddings: (N, D) the rows the searcher was built from.
        paths: the catalogue image of each row.
        index_dir: the folder to create (missing or empty).

    Raises:
        FileExistsError: `index_dir` exists and is not empty.
        ValueError: embeddings or paths that do not match the index's rows.
    """
    check_free(index_dir)
    if embeddings.shape != (index.num_items, index.embedding_dim):
        raise ValueError(
            f"embeddings of shape {embeddings.shape} for an index of "
            f"{index.num_items} x {index.embedding_dim}."
        )
    if len(paths) != index.num_items:
        raise ValueError(
            f"{len(paths)} paths for an index of {index.num_items} items."
        )
    with files.staged_folder(index_dir) as staging:
        os.makedirs(os.path.join(staging, SCANN_DIR))
        index.write_searcher(os.path.join(staging, SCANN_DIR))
        np.save(
            os.path.join(staging, EMBEDDINGS_FILE),
            np.asarray(embeddings, np.float32),
        )
        catalog_lib.write_csv(
            os.path.join(staging, ITEMS_FILE),
            catalog_lib.CATALOG_COLUMNS,
            zip(index.item_ids, paths),
        )
        manifest = dict(
            index.manifest,
            format_version=FORMAT_VERSION,
            files=_describe_files(staging),
        )
        with open(os.path.join(staging, MANIFEST_FILE), "w") as stream:
            json.dump(manifest, stream, indent=2, sort_keys=True)
    index.manifest, index.directory = manifest, index_dir
    logging.info(
        "Index of %d items (%s) written to %s",
        index.num_items,
        index.params.mode,
        index_dir,
    )
    return index_dir


def load_index(index_dir: str) -> IndexBundle:
    """Loads an index folder written by `write_index`, checking every file.

    Raises:
        FileNotFoundError: `index_dir` or one of its files is missing.
        ValueError: a file is corrupt (its checksum differs from the
            manifest's) or the files disagree with each other.
    """
    if not os.path.isdir(index_dir):
        raise FileNotFoundError(
            f"Index directory {index_dir} does not exist; build one with "
            "python -m beau_tf.index."
        )
    if not os.path.isfile(os.path.join(index_dir, MANIFEST_FILE)):
        raise FileNotFoundError(
            f"Index directory {index_dir} has no {MANIFEST_FILE}; it is not a "
            f"beau_tf index ({_REBUILD})."
        )
    manifest = _read_manifest(index_dir)
    _verify_files(index_dir, manifest.get("files"))
    item_ids, paths = _read_items(index_dir)
    embeddings = np.load(os.path.join(index_dir, EMBEDDINGS_FILE))
    try:
        num_items = int(manifest["num_items"])
        dim = int(manifest["embedding_dim"])
        scann_index.IndexParams(**manifest["params"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"Index {index_dir} has a corrupt {MANIFEST_FILE}: {error}"
        ) from error
    if len(item_ids) != num_items or embeddings.shape != (num_items, dim):
        raise ValueError(
            f"Index {index_dir} lists {len(item_ids)} items and "
            f"{embeddings.shape} embeddings, but its manifest says "
            f"{num_items} x {dim}; it is corrupt ({_REBUILD})."
        )
    index = scann_index.CatalogIndex.read_searcher(
        os.path.join(index_dir, SCANN_DIR), item_ids, manifest, index_dir
    )
    logging.info("Loaded the %d-item index %s", num_items, index_dir)
    return IndexBundle(index, embeddings, dict(zip(item_ids, paths)), index_dir)


def _read_manifest(index_dir: str) -> dict:
    try:
        with open(os.path.join(index_dir, MANIFEST_FILE)) as stream:
            manifest = json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Index {index_dir} has a corrupt {MANIFEST_FILE} ({error}); "
            f"{_REBUILD}."
        ) from error
    if not isinstance(manifest, dict):
        raise ValueError(
            f"Index {index_dir} has a corrupt {MANIFEST_FILE}: a JSON object "
            f"expected; {_REBUILD}."
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"Index {index_dir} has format_version {version!r}; this code "
            f"reads version {FORMAT_VERSION} ({_REBUILD})."
        )
    return manifest


def _read_items(index_dir: str) -> tuple[list[str], list[str]]:
    """Item ids and image paths, row-aligned (paths read as written: the
    images may have moved since; only pictures need them)."""
    with open(os.path.join(index_dir, ITEMS_FILE), newline="") as stream:
        rows = list(csv.DictReader(stream))
    return [row["item_id"] for row in rows], [row["path"] for row in rows]


def _file_sha256(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _describe_files(directory: str) -> dict:
    """{relative path: {"bytes", "sha256"}} of every file under it."""
    described = {}
    for folder, _, names in os.walk(directory):
        for name in sorted(names):
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            described[relative] = {
                "bytes": os.path.getsize(path),
                "sha256": _file_sha256(path),
            }
    return described


def _verify_files(directory: str, expected) -> None:
    """Raises unless every file the manifest lists is there, intact."""
    if not isinstance(expected, dict) or not expected:
        raise ValueError(
            f"Index {directory} has a corrupt {MANIFEST_FILE}: no file "
            f"checksums; {_REBUILD}."
        )
    for relative, want in sorted(expected.items()):
        path = os.path.join(directory, *relative.split("/"))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Index directory {directory} has no {relative}; it is not "
                f"a complete index ({_REBUILD})."
            )
        if os.path.getsize(path) != want.get("bytes"):
            raise ValueError(
                f"Index {directory} has a corrupt {relative}: "
                f"{os.path.getsize(path)} bytes, the manifest says "
                f"{want.get('bytes')}; {_REBUILD}."
            )
        if _file_sha256(path) != want.get("sha256"):
            raise ValueError(
                f"Index {directory} has a corrupt {relative}: its SHA-256 "
                f"differs from the manifest's; {_REBUILD}."
            )
