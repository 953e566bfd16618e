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

from beau_tf.common import files
from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import scann_index

_SCANN_DIR = "scann"
_EMBEDDINGS_FILE = "embeddings.npy"
_ITEMS_FILE = "items.csv"


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
