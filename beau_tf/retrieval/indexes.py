"""What every catalogue index provides, whatever searches it.

An index holds the ids of N catalogue items and answers top-k queries by
inner product over their (N, D) L2-normalised embeddings, i.e. by cosine
similarity. Each index type is a `CatalogIndex` subclass in its own module,
named by its `kind` in `INDEX_TYPES` and in the index folder's manifest:

  build     `cls.build(embeddings, item_ids, model_identity, settings)`
  save      `index.save(folder)`: the type's own files, if it has any
  load      `cls.load(folder, item_ids, embeddings, manifest, directory)`
  search    `index.search(queries, k)`: Q lists of k ids, (Q, k) scores
  identity  `index.model_identity`, `num_items`, `embedding_dim`, `kind`

`beau_tf.retrieval.index_dir` writes the ids, the embeddings and the
manifest beside the type's own files (in `<index_dir>/<kind>/`) and loads
them back. Every type refuses a model other than the one it was built from
with the same `check_compatible`. A new type (faiss...) is one module and
one line of `INDEX_TYPES`; "milvus" keeps its vectors on a Milvus server.
"""

import abc
import datetime
import importlib
import json
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from beau_tf.serving import contract

# kind -> "module:class". A type is imported when an index of it is built or
# loaded, so its library (ScaNN, faiss...) is needed only by its indexes.
INDEX_TYPES = {
    "scann": "beau_tf.retrieval.scann_index:ScannIndex",
    "brute_force": "beau_tf.retrieval.brute_force_index:BruteForceIndex",
    "milvus": "beau_tf.retrieval.milvus_index:MilvusIndex",
}
DEFAULT_KIND = "scann"
# Catalogue rows checked at a time before a build.
_CHECK_ROWS = 2**16

IDENTITY_KEYS = (
    "model_name",
    "model_version",
    "signature_fingerprint",
    "embedding_dim",
)
REBUILD_HINT = contract.REBUILD_HINT


def index_type(kind: str) -> type["CatalogIndex"]:
    """The `CatalogIndex` subclass of an index kind, e.g. "scann".

    Raises:
      ValueError: `kind` is not in `INDEX_TYPES`.
    """
    if kind not in INDEX_TYPES:
        raise ValueError(
            f"Unknown index type {kind!r}; expected one of "
            f"{', '.join(sorted(INDEX_TYPES))}."
        )
    module_name, class_name = INDEX_TYPES[kind].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _check_embeddings(embeddings: np.ndarray, item_ids: Sequence[str]):
    if embeddings.ndim != 2 or embeddings.shape[0] < 1:
        raise ValueError(
            f"Embeddings have shape {embeddings.shape}; expected (N, D) with "
            "N >= 1 items."
        )
    # A slice of rows at a time: a 10M-row catalogue, memory-mapped from
    # disk, is read once and never copied whole.
    for start in range(0, embeddings.shape[0], _CHECK_ROWS):
        rows = embeddings[start : start + _CHECK_ROWS]
        finite = np.all(np.isfinite(rows), axis=1)
        if not finite.all():
            bad = start + np.flatnonzero(~finite)
            raise ValueError(
                f"Embeddings of {len(bad)} items in rows {start}-"
                f"{start + len(rows) - 1} are not finite (first: row "
                f"{bad[0]}, item {item_ids[bad[0]]!r}); re-embed them."
            )
        norms = np.sqrt(np.einsum("nd,nd->n", rows, rows))
        bad = start + np.flatnonzero(np.abs(norms - 1.0) > 1e-3)
        if len(bad):
            raise ValueError(
                f"Embeddings of {len(bad)} items in rows {start}-"
                f"{start + len(rows) - 1} are not L2-normalised (row "
                f"{bad[0]}, item {item_ids[bad[0]]!r}, has norm "
                f"{norms[bad[0] - start]:.4f}); normalise with "
                "x / np.linalg.norm(x, axis=1, keepdims=True)."
            )


def _check_ids(item_ids: Sequence[str], num_items: int) -> list[str]:
    item_ids = list(item_ids)
    if len(item_ids) != num_items:
        raise ValueError(
            f"Got {len(item_ids)} item ids for {num_items} embeddings; each "
            "embedding row needs exactly one id."
        )
    not_str = [i for i in item_ids if not isinstance(i, str)]
    if not_str:
        raise ValueError(
            f"Item ids must be strings; got {not_str[0]!r} "
            f"({type(not_str[0]).__name__})."
        )
    if len(set(item_ids)) != len(item_ids):
        seen, duplicate = set(), None
        for item_id in item_ids:
            if item_id in seen:
                duplicate = item_id
                break
            seen.add(item_id)
        raise ValueError(
            f"Item id {duplicate!r} appears more than once; ids must be "
            "unique so that results name one item."
        )
    return item_ids


def check_build_inputs(
    embeddings: np.ndarray, item_ids: Sequence[str], model_identity: dict
) -> tuple[np.ndarray, list[str]]:
    """What every index type checks before building.

    Args:
      embeddings: (N, D) L2-normalised, row i for `item_ids[i]`.
      item_ids: N unique string ids.
      model_identity: the model the embeddings came from; must hold
        `IDENTITY_KEYS`, with `embedding_dim` equal to D.

    Returns:
      The embeddings as C-contiguous float32 (N, D) and the ids as a list.

    Raises:
      ValueError: naming the first bad row, id or identity key.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    _check_embeddings(embeddings, item_ids)
    num_items, dim = embeddings.shape
    item_ids = _check_ids(item_ids, num_items)
    missing = [key for key in IDENTITY_KEYS if key not in model_identity]
    if missing:
        raise ValueError(
            f"model_identity {model_identity!r} lacks {missing}; the index "
            "records them so search can refuse a different model."
        )
    if model_identity["embedding_dim"] != dim:
        raise ValueError(
            f"model_identity says embedding_dim="
            f"{model_identity['embedding_dim']}, but the embeddings are "
            f"{dim}-d; they come from another model."
        )
    return embeddings, item_ids


def new_manifest(
    kind: str, model_identity: dict, embeddings: np.ndarray
) -> dict:
    """The manifest entries every index type records when it is built.

    Returns:
      {"kind", "model_identity" (a JSON copy), "num_items",
      "embedding_dim", "created" (UTC ISO time)}; a type adds its own.
    """
    num_items, dim = embeddings.shape
    return {
        "kind": kind,
        "model_identity": json.loads(json.dumps(model_identity)),
        "num_items": num_items,
        "embedding_dim": dim,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


class CatalogIndex(abc.ABC):
    """A searchable catalogue: item ids, manifest and a type's searcher.

    Attributes:
      kind: the type's name in `INDEX_TYPES`, the manifest and the index
        folder ("scann", "brute_force", "milvus").
      item_ids: the id of each indexed row.
      manifest: "kind", "model_identity", "num_items", "embedding_dim",
        "created" and the type's own entries.
      directory: where it was saved or loaded from, or None.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        item_ids: list[str],
        manifest: dict,
        directory: str | None = None,
    ):
        self.item_ids = item_ids
        self.manifest = manifest
        self.directory = directory
        self._ids = np.asarray(item_ids, dtype=object)

    @classmethod
    @abc.abstractmethod
    def build(
        cls,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        model_identity: dict,
        settings=None,
    ) -> "CatalogIndex":
        """Builds an index in memory; `index_dir.write_index` saves it.

        Args:
          embeddings: (N, D) L2-normalised float32, row i for `item_ids[i]`.
          item_ids: N unique string ids.
          model_identity: the model the embeddings came from, stored as
            given (JSON-serialisable, holding `IDENTITY_KEYS`).
          settings: the type's configuration, or None for its default.

        Raises:
          ValueError: when the embeddings, ids, identity or settings are
            invalid.
        """

    @abc.abstractmethod
    def save(self, folder: str) -> None:
        """Writes the type's own files into `folder`, created if needed.

        A type that searches the index folder's embeddings directly has no
        files of its own and writes nothing.
        """

    @classmethod
    @abc.abstractmethod
    def load(
        cls,
        folder: str,
        item_ids: list[str],
        embeddings: np.ndarray,
        manifest: dict,
        directory: str,
    ) -> "CatalogIndex":
        """Loads what `save` wrote into `folder`.

        The caller has verified every file's checksum (`index_dir` does):
        some searchers crash the process on a corrupt file.

        Args:
          folder: the type's own folder, `<directory>/<kind>`.
          item_ids: the id of each row, from the index folder.
          embeddings: (N, D) the index folder's embeddings, row-aligned.
          manifest: the index folder's manifest.
          directory: the index folder, for messages.

        Raises:
          ValueError: the files are unreadable or disagree with `item_ids`.
        """

    @classmethod
    def check_manifest(cls, manifest: dict) -> None:
        """Raises KeyError, TypeError or ValueError on corrupt type entries.

        Nothing to check by default.
        """
        del manifest

    @property
    def model_identity(self) -> dict:
        return self.manifest["model_identity"]

    @property
    def num_items(self) -> int:
        return self.manifest["num_items"]

    @property
    def embedding_dim(self) -> int:
        return self.manifest["embedding_dim"]

    @property
    def summary(self) -> str:
        """The type and its configuration in a few words, for logs."""
        return self.kind

    def _where(self) -> str:
        return self.directory or "(in memory)"

    def check_compatible(self, model_identity: dict) -> None:
        """Refuses a model other than the one this index was built with
        (`contract.check_compatible`, the one place that decides it)."""
        contract.check_compatible(
            self.model_identity, model_identity, f"index {self._where()}"
        )

    def search(
        self, queries: np.ndarray, k: int, **options
    ) -> tuple[list[list[str]], np.ndarray]:
        """Finds the k catalogue items with the largest inner product.

        Args:
          queries: (Q, D) float32 query embeddings.
          k: results per query, 1 <= k <= num_items.
          **options: the type's search-time settings, if any.

        Returns:
          ids: Q lists of k item ids, best first.
          scores: (Q, k) float32 inner products, matching `ids`.

        Raises:
          ValueError: when the queries or k do not fit the index.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.embedding_dim:
            raise ValueError(
                f"Queries have shape {queries.shape}; index {self._where()} "
                f"expects (Q, {self.embedding_dim})."
            )
        if not np.all(np.isfinite(queries)):
            raise ValueError("Queries contain NaN or infinite values.")
        if not 1 <= k <= self.num_items:
            raise ValueError(
                f"k={k} must be between 1 and the index's {self.num_items} "
                "items."
            )
        if queries.shape[0] == 0:
            return [], np.zeros((0, k), np.float32)
        rows, scores = self._search_rows(queries, k, **options)
        return self._ids[rows].tolist(), scores

    @abc.abstractmethod
    def _search_rows(
        self, queries: np.ndarray, k: int, **options
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` on checked queries: (Q, k) int64 rows, (Q, k) scores."""
