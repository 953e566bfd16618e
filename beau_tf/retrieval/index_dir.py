"""The index folder: everything search needs, written whole or not at all.

```
<index_dir>/
  manifest.json    format version, the index kind ("scann", "brute_force"),
                   the model it was built from (name, version, signature and
                   model fingerprints, embedding size), item count, creation
                   time, the size and SHA-256 of every other file below, the
                   kind's own entries (ScaNN: build parameters and version,
                   and, built with a target recall, "tuning": the target,
                   the search setting chosen, the recall it measured and on
                   how many queries)
  items.csv        item_id,path: row i of the embeddings is item i
  embeddings.npy   (N, D) float32 catalogue embeddings (exact search,
                   evaluation, DBA), memory-mapped when loaded: read from
                   disk as needed, never a second copy beside the index's
  <kind>/          the index type's own files: scann/ holds ScaNN's
                   serialized searcher (relative paths, so it moves);
                   milvus/connection.json the server's URI and the
                   collection (the vectors are on the server); brute force
                   has none (it searches embeddings.npy)
```

A manifest without a kind was written before there were other kinds than
ScaNN, and loads as one. `write_index` stages everything in a hidden sibling
folder and renames it into place; an existing non-empty folder is never
overwritten. `load_index` verifies every checksum before reading anything
else, since ScaNN crashes the process (segmentation fault) on a corrupt file
instead of raising.
"""

import csv
import dataclasses
import json
import os

from absl import logging
import numpy as np

from beau_tf.common import files
from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import indexes
from beau_tf.retrieval import tuning

FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
ITEMS_FILE = "items.csv"
EMBEDDINGS_FILE = "embeddings.npy"
# The kind of an index whose manifest names none: the only one there was.
UNRECORDED_KIND = "scann"
_REBUILD = indexes.REBUILD_HINT


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

    index: indexes.CatalogIndex
    embeddings: np.ndarray  # (N, D), memory-mapped read-only
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
    settings=None,
    target_recall: float | None = None,
    index_type: str = indexes.DEFAULT_KIND,
) -> str:
    """Builds an index over `embedded` and writes its folder.

    Args:
        embedded: the catalogue's embeddings, ids and paths.
        index_dir: the folder to create (missing or empty).
        settings: the index type's configuration (ScaNN: an `IndexParams`,
            `choose_index_params` by default; Milvus: a `MilvusSettings`,
            required; brute force: none).
        target_recall: when given (ScaNN only), `tuning.tune_search` picks
            the cheapest leaves-to-search and reorder reaching this recall@k
            on a sample of the catalogue, recorded in the manifest.
        index_type: a kind in `indexes.INDEX_TYPES`.

    Raises:
        FileExistsError: `index_dir` exists and is not empty.
        ValueError: an unknown index type, invalid embeddings or settings,
            or a target recall for a type other than ScaNN.
    """
    check_free(index_dir)
    index = indexes.index_type(index_type).build(
        embedded.embeddings,
        embedded.item_ids,
        embedded.model_identity,
        settings,
    )
    if target_recall is not None:
        index = tuning.tune_search(index, embedded.embeddings, target_recall)
    return write_index(index, embedded.embeddings, embedded.paths, index_dir)


def write_index(
    index: indexes.CatalogIndex,
    embeddings: np.ndarray,
    paths: list[str],
    index_dir: str,
) -> str:
    """Writes the index folder atomically; returns `index_dir`.

    Args:
        index: an index of any type, row i for `index.item_ids[i]`.
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
        index.save(os.path.join(staging, index.kind))
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
        index.summary,
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
    # Memory-mapped: a 10M-item catalogue's 10 GiB stay on disk (in the page
    # cache) until exact search or evaluation reads them.
    embeddings = np.load(
        os.path.join(index_dir, EMBEDDINGS_FILE), mmap_mode="r"
    )
    kind = manifest.get("kind", UNRECORDED_KIND)
    if kind not in indexes.INDEX_TYPES:
        raise ValueError(
            f"Index {index_dir} is a {kind!r} index, a kind this beau_tf "
            f"does not know ({', '.join(sorted(indexes.INDEX_TYPES))}); "
            f"{_REBUILD}."
        )
    index_class = indexes.index_type(kind)
    try:
        num_items = int(manifest["num_items"])
        dim = int(manifest["embedding_dim"])
        if not isinstance(manifest["model_identity"], dict):
            raise TypeError("model_identity is not an object")
        index_class.check_manifest(manifest)
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
    index = index_class.load(
        os.path.join(index_dir, kind), item_ids, embeddings, manifest, index_dir
    )
    logging.info("Loaded the %d-item %s index %s", num_items, kind, index_dir)
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
    item_ids, paths = [], []
    with open(os.path.join(index_dir, ITEMS_FILE), newline="") as stream:
        # Row by row, not as dicts: 10M of them would take gigabytes.
        reader = csv.reader(stream)
        header = next(reader, [])
        try:
            id_column, path_column = header.index("item_id"), header.index(
                "path"
            )
        except ValueError:
            raise ValueError(
                f"Index {index_dir} has an {ITEMS_FILE} without the header "
                f"item_id,path; it is corrupt ({_REBUILD})."
            ) from None
        for row in reader:
            item_ids.append(row[id_column])
            paths.append(row[path_column])
    return item_ids, paths


def _describe_files(directory: str) -> dict:
    """{relative path: {"bytes", "sha256"}} of every file under it."""
    described = {}
    for folder, _, names in os.walk(directory):
        for name in sorted(names):
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            described[relative] = {
                "bytes": os.path.getsize(path),
                "sha256": files.file_sha256(path),
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
        if files.file_sha256(path) != want.get("sha256"):
            raise ValueError(
                f"Index {directory} has a corrupt {relative}: its SHA-256 "
                f"differs from the manifest's; {_REBUILD}."
            )
