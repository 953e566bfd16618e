"""The brute-force index type: exact inner-product search in NumPy.

Every query is scored against every catalogue row (`metrics.rank_exact`'s
blocked matmul and top-k, equal scores to the lower row), so results are
exact and repeatable, at a cost linear in the catalogue: right for small
catalogues, as the oracle approximate types are measured against, and where
a ScaNN build is not wanted. It has no files of its own: it searches the
index folder's `embeddings.npy`.
"""

from collections.abc import Sequence

from absl import logging
import numpy as np

from beau_tf.retrieval import indexes
from beau_tf.retrieval import metrics


class BruteForceIndex(indexes.CatalogIndex):
    """Exact search over the catalogue embeddings it holds (no copy)."""

    kind = "brute_force"

    def __init__(
        self,
        embeddings: np.ndarray,
        item_ids: list[str],
        manifest: dict,
        directory: str | None = None,
    ):
        super().__init__(item_ids, manifest, directory)
        self._embeddings = embeddings  # (N, D) float32

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        model_identity: dict,
        settings=None,
    ) -> "BruteForceIndex":
        """Checks the embeddings and keeps them; there is nothing to train.

        Args:
          embeddings: (N, D) L2-normalised float32, row i for `item_ids[i]`.
          item_ids: N unique string ids.
          model_identity: the model the embeddings came from (see
            `indexes.check_build_inputs`).
          settings: must be None: exact search has nothing to configure.

        Raises:
          ValueError: settings were given, or the embeddings, ids or
            identity are invalid.
        """
        if settings is not None:
            raise ValueError(
                f"A brute_force index has no settings (got {settings!r}); "
                "exact search has nothing to configure."
            )
        embeddings, item_ids = indexes.check_build_inputs(
            embeddings, item_ids, model_identity
        )
        logging.info(
            "Building a brute-force index over %d x %d embeddings",
            *embeddings.shape,
        )
        manifest = indexes.new_manifest(cls.kind, model_identity, embeddings)
        return cls(embeddings, item_ids, manifest)

    def save(self, folder: str) -> None:
        """Writes nothing: the index folder's embeddings are all it needs."""
        del folder

    @classmethod
    def load(
        cls,
        folder: str,
        item_ids: list[str],
        embeddings: np.ndarray,
        manifest: dict,
        directory: str,
    ) -> "BruteForceIndex":
        """The index over the index folder's embeddings.

        Raises:
          ValueError: the embeddings are not (len(item_ids), D) float32.
        """
        del folder  # Nothing of its own was saved.
        if embeddings.dtype != np.float32 or len(embeddings) != len(item_ids):
            raise ValueError(
                f"Index {directory} has {embeddings.dtype} embeddings of "
                f"shape {embeddings.shape} for {len(item_ids)} item ids; "
                f"(N, D) float32 expected ({indexes.REBUILD_HINT})."
            )
        return cls(
            np.ascontiguousarray(embeddings), item_ids, manifest, directory
        )

    def _search_rows(
        self, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        # The catalogue was checked when built and the queries by `search`.
        return metrics.rank_exact_unchecked(queries, self._embeddings, k)
