"""The catalogue index artifact: ScaNN searcher, embeddings, image paths.

An index directory is written whole or not at all:

  <index_dir>/scann/          the ScaNN searcher, item ids and manifest
                              (`beau_tf.scann_index.CatalogIndex`; the manifest
                              names the model version it was built from)
  <index_dir>/embeddings.npy  (N, D) float32 catalogue embeddings, row i for
                              item i (exact search, evaluation, DBA)
  <index_dir>/items.csv       item_id,path of each indexed catalogue image
                              (for contact sheets)

Large catalogues are embedded in shards (`embed_catalog_shard`, one per
machine), written as `.npz` files and merged with `merge_shards`.
"""

import csv
import dataclasses
import glob
import json
import os
import shutil
import tempfile

from absl import logging
import numpy as np

from beau_tf import embedding as embedding_lib
from beau_tf import files
from beau_tf import scann_index
from beau_tf.data import catalog as catalog_lib

_SCANN_DIR = "scann"
_EMBEDDINGS_FILE = "embeddings.npy"
_ITEMS_FILE = "items.csv"
SHARD_PATTERN = "shard-{index:05d}-of-{count:05d}.npz"


@dataclasses.dataclass
class EmbeddedCatalog:
    """Catalogue embeddings with their ids and image paths, row-aligned."""

    embeddings: np.ndarray  # (N, D) float32, L2-normalised
    item_ids: list[str]
    paths: list[str]
    model_identity: dict


@dataclasses.dataclass
class IndexBundle:
    """A loaded index directory."""

    index: scann_index.CatalogIndex
    embeddings: np.ndarray  # (N, D)
    paths: dict[str, str]  # item id -> catalogue image
    directory: str

    @property
    def manifest(self) -> dict:
        return self.index.manifest


def embed_catalog_shard(
    saved_model_dir: str,
    model_identity: dict,
    items: list[catalog_lib.CatalogItem],
    num_shards: int = 1,
    shard_index: int = 0,
    batch_size: int = 32,
) -> EmbeddedCatalog:
    """Embeds shard `shard_index` of `num_shards` of a catalogue.

    Shards are contiguous runs of the catalogue's (sorted) items, so merging
    them in shard order restores the catalogue order.
    """
    start, stop = embedding_lib.shard_bounds(
        len(items), num_shards, shard_index
    )
    shard = items[start:stop]
    embeddings, kept = embedding_lib.embed_files(
        embedding_lib.load_embed_fn(saved_model_dir),
        [item.path for item in shard],
        batch_size=batch_size,
        description=f"Embedding catalogue shard {shard_index + 1}/{num_shards}",
    )
    return EmbeddedCatalog(
        embeddings=embeddings,
        item_ids=[shard[i].item_id for i in kept],
        paths=[shard[i].path for i in kept],
        model_identity=model_identity,
    )


def save_shard(
    embedded: EmbeddedCatalog, shard_dir: str, num_shards: int, shard_index: int
) -> str:
    """Writes one shard's embeddings as `.npz`, atomically; returns its path."""
    path = os.path.join(
        shard_dir, SHARD_PATTERN.format(index=shard_index, count=num_shards)
    )
    with files.atomic_path(path, ".npz") as temporary:
        np.savez(
            temporary,
            embeddings=embedded.embeddings,
            item_ids=np.asarray(embedded.item_ids, dtype=str),
            paths=np.asarray(embedded.paths, dtype=str),
            model_identity=json.dumps(embedded.model_identity),
        )
    return path


def merge_shards(shard_dir: str) -> EmbeddedCatalog:
    """Joins all shards of one run, checking none is missing or foreign.

    Raises:
        FileNotFoundError: no shard, or a shard of the run is missing.
        ValueError: shards embedded by different models.
    """
    paths = sorted(glob.glob(os.path.join(shard_dir, "shard-*-of-*.npz")))
    if not paths:
        raise FileNotFoundError(
            f"No shard-*-of-*.npz under {shard_dir} (python -m beau_tf.index "
            "--num_shards=N --shard_index=I writes them)."
        )
    count = int(os.path.basename(paths[0]).split("-of-")[1].split(".")[0])
    expected = [
        os.path.join(shard_dir, SHARD_PATTERN.format(index=i, count=count))
        for i in range(count)
    ]
    missing = sorted(set(expected) - set(paths))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {count} shards missing under {shard_dir}: "
            f"{', '.join(os.path.basename(p) for p in missing[:5])}"
        )
    parts = [np.load(path) for path in expected]
    identities = {str(part["model_identity"]) for part in parts}
    if len(identities) > 1:
        raise ValueError(
            f"Shards under {shard_dir} come from different models; re-embed "
            "them all with one exported model version."
        )
    return EmbeddedCatalog(
        embeddings=np.concatenate([p["embeddings"] for p in parts]),
        item_ids=[str(i) for p in parts for i in p["item_ids"]],
        paths=[str(i) for p in parts for i in p["paths"]],
        model_identity=json.loads(identities.pop()),
    )


def build_and_save(
    embedded: EmbeddedCatalog,
    index_dir: str,
    params: scann_index.IndexParams | None = None,
) -> str:
    """Builds the ScaNN index and writes the whole index directory atomically.

    Raises:
        FileExistsError: `index_dir` exists and is not empty (never
            overwritten; remove it or choose another).
    """
    if os.path.isdir(index_dir) and os.listdir(index_dir):
        raise FileExistsError(
            f"{index_dir} exists and is not empty; an index is never "
            "overwritten (remove it or pass another --index_dir)."
        )
    index = scann_index.build_index(
        embedded.embeddings, embedded.item_ids, embedded.model_identity, params
    )
    parent = os.path.dirname(os.path.abspath(index_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(
        prefix=f".{os.path.basename(index_dir)}.tmp-", dir=parent
    )
    try:
        index.save(os.path.join(staging, _SCANN_DIR))
        np.save(os.path.join(staging, _EMBEDDINGS_FILE), embedded.embeddings)
        catalog_lib.write_csv(
            os.path.join(staging, _ITEMS_FILE),
            catalog_lib.CATALOG_COLUMNS,
            zip(embedded.item_ids, embedded.paths),
        )
        if os.path.isdir(index_dir):
            os.rmdir(index_dir)  # empty, checked above
        os.rename(staging, index_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info(
        "Index of %d items (%s) written to %s",
        len(embedded.item_ids),
        index.manifest["params"]["mode"],
        index_dir,
    )
    return index_dir


def load_index(index_dir: str) -> IndexBundle:
    """Loads an index directory written by `build_and_save`.

    Raises:
        FileNotFoundError: `index_dir` is not an index directory.
    """
    scann_dir = os.path.join(index_dir, _SCANN_DIR)
    if not os.path.isdir(scann_dir):
        raise FileNotFoundError(
            f"{index_dir} is not a beau_tf index (no {_SCANN_DIR}/ inside; "
            "python -m beau_tf.index writes one)."
        )
    index = scann_index.CatalogIndex.load(scann_dir)
    embeddings = np.load(os.path.join(index_dir, _EMBEDDINGS_FILE))
    # Read as is: the images may have moved since; only pictures need them.
    with open(os.path.join(index_dir, _ITEMS_FILE), newline="") as stream:
        paths = {row["item_id"]: row["path"] for row in csv.DictReader(stream)}
    return IndexBundle(index, embeddings, paths, index_dir)
