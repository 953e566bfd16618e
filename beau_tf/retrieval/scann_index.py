"""The ScaNN index type: a ScaNN searcher over catalogue embeddings.

`ScannIndex.build` picks ScaNN's configuration from the catalogue's size
(`choose_index_params`) and builds the searcher in memory;
`beau_tf.retrieval.tuning.tune_search` optionally picks its search-time knobs
(leaves searched, candidates rescored) for a target recall, measured against
exact search; `beau_tf.retrieval.index_dir` writes it (with the embeddings
and item ids) to an index folder, ScaNN's files in `scann/`, and loads it
back. The rest of the interface (search's checks, identity,
`check_compatible`) is `beau_tf.retrieval.indexes.CatalogIndex`'s.

Embeddings are L2-normalised, so the inner product ScaNN scores with is the
cosine similarity.

A partitioned ("tree_ah") index is built in two steps, so a catalogue
memory-mapped from disk is never copied whole: ScaNN trains its partitions
and AH codebooks on a random sample of rows and indexes them, then the other
rows are added a slice at a time. ScaNN then holds only what it searches
with: AH codes, and the rescoring copy in `reorder_dtype` (int8 and
bfloat16 copies replace the float32 one). The searcher's rows are then the
sample first, so `row_order.npy` beside ScaNN's files maps them back to the
catalogue's. `estimate_memory` says what a build needs before it starts.
"""

import dataclasses
import importlib.metadata
import os
import time
from collections.abc import Sequence

from absl import logging
import numpy as np
from scann.scann_ops.py import scann_builder
from scann.scann_ops.py import scann_ops_pybind

from beau_tf.common import progress
from beau_tf.retrieval import indexes

MODES = ("brute_force", "ah", "tree_ah")
# The copy of the catalogue that rescores AH's candidates: its bytes per
# value, and ScaNN's name for it.
REORDER_DTYPES = {
    "float32": (4, scann_builder.ReorderType.FLOAT32),
    "bfloat16": (2, scann_builder.ReorderType.BFLOAT16),
    "int8": (1, scann_builder.ReorderType.INT8),
}
# From this size the rescoring copy is bfloat16: half float32's memory (5 GiB
# at 10M x 256-d); at 1M it answered 1.17x float32's QPS at the fastest
# setting reaching 0.95, for 0.005 less recall@10, int8 0.021 less
# (bench/RESULTS.md, "Scale").
BFLOAT16_FROM = 1_000_000
# A partitioned index trains on at least this many sampled rows per leaf and
# adds the rest in slices of `_ADD_ROWS`. ScaNN's k-means asks for 50 or
# more, but at 100 per leaf it split clusters across leaves: at 1M x 256-d
# its tuned index needed 2 of 1,000 leaves for 0.962 recall@10, and at 300
# per leaf 1 leaf for 0.982, at more QPS (bench/RESULTS.md, "Scale").
_SAMPLE_ROWS_PER_LEAF = 300
_ADD_ROWS = 100_000
ROW_ORDER_FILE = "row_order.npy"

# ScaNN's rules of thumb (scann/docs/algorithms.md): brute force below 20k
# points, AH + rescoring below 100k, partitioning + AH + rescoring above.
BRUTE_FORCE_BELOW = 20_000
TREE_FROM = 100_000
# Samples ScaNN trains k-means (partitions and AH codebooks) on; its default.
_TRAINING_SAMPLE = 100_000


@dataclasses.dataclass(frozen=True)
class IndexParams:
    """How the ScaNN searcher is built.

    Attributes:
      mode: "brute_force" (exact inner products), "ah" (asymmetric hashing,
        then exact rescoring of the best `reorder`) or "tree_ah" (k-means
        partitioning into `num_leaves`, searching `num_leaves_to_search` of
        them, then AH and rescoring).
      num_neighbors: the default number of results.
      num_leaves: partitions, for "tree_ah" (about sqrt(num_items)).
      num_leaves_to_search: partitions searched per query, for "tree_ah".
      dimensions_per_block: dimensions per AH block (ScaNN recommends 2).
      anisotropic_quantization_threshold: AH's anisotropic loss threshold
        (0.2 suits normalised vectors, as in ScaNN's examples).
      reorder: candidates rescored exactly after AH; at least
        `num_neighbors` for the AH modes, unused by "brute_force".
      reorder_dtype: the rescoring copy's type, a key of `REORDER_DTYPES`
        (AH modes): "float32" is exact, "bfloat16" half its memory,
        "int8" a quarter.
      soar_lambda: when set ("tree_ah"), each item is also filed in a
        second leaf chosen by SOAR (spilling with orthogonality-amplified
        residuals, ScaNN >= 1.3; 1.5 is its paper's value).
    """

    mode: str
    num_neighbors: int
    num_leaves: int = 0
    num_leaves_to_search: int = 0
    dimensions_per_block: int = 2
    anisotropic_quantization_threshold: float = 0.2
    reorder: int = 0
    reorder_dtype: str = "float32"
    soar_lambda: float | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(
                f"IndexParams mode={self.mode!r} is not one of {MODES}."
            )
        if self.num_neighbors < 1:
            raise ValueError(
                f"IndexParams num_neighbors={self.num_neighbors} must be at "
                "least 1."
            )
        if self.mode == "brute_force":
            return
        if self.reorder_dtype not in REORDER_DTYPES:
            raise ValueError(
                f"IndexParams reorder_dtype={self.reorder_dtype!r} is not one "
                f"of {tuple(REORDER_DTYPES)}."
            )
        if self.soar_lambda is not None and not (
            self.mode == "tree_ah" and self.soar_lambda > 0
        ):
            raise ValueError(
                f"IndexParams soar_lambda={self.soar_lambda} needs mode "
                "'tree_ah' and a positive value (try 1.5)."
            )
        if self.dimensions_per_block < 1:
            raise ValueError(
                "IndexParams dimensions_per_block="
                f"{self.dimensions_per_block} must be at least 1 (ScaNN "
                "recommends 2)."
            )
        if self.reorder < self.num_neighbors:
            raise ValueError(
                f"IndexParams reorder={self.reorder} is below num_neighbors="
                f"{self.num_neighbors}; mode {self.mode!r} scores with "
                "approximate AH distances and needs exact rescoring of at "
                "least num_neighbors candidates (try reorder=100)."
            )
        if self.mode == "tree_ah" and not (
            1 <= self.num_leaves_to_search <= self.num_leaves
        ):
            raise ValueError(
                f"IndexParams num_leaves={self.num_leaves}, "
                f"num_leaves_to_search={self.num_leaves_to_search}: tree_ah "
                "needs 1 <= num_leaves_to_search <= num_leaves (try "
                "num_leaves ~ sqrt(num_items), searching 5-10% of them)."
            )


def choose_index_params(
    num_items: int, dim: int, num_neighbors: int = 10
) -> IndexParams:
    """Picks a ScaNN configuration by catalogue size.

    Follows the rules of thumb in ScaNN's `scann/docs/algorithms.md`
    (google-research/scann): "For a small dataset (fewer than 20k points),
    use brute-force. For a dataset with less than 100k points, score with AH,
    then rescore. For datasets larger than 100k points, partition, score with
    AH, then rescore. When scoring with AH, `dimensions_per_block` should be
    set to 2. When partitioning, `num_leaves` should be roughly the square
    root of the number of datapoints." The page leaves
    `num_leaves_to_search` and `reorder` to be tuned for the recall wanted;
    5% of the leaves and 100 rescored candidates measured recall@10 0.98
    at 100K and 1M clustered, normalised 256-d vectors, at 27x and 60x
    exact search's queries/second (`bench/scann_vs_exact.py`; 1% of the
    leaves still gave 0.98 at 1M, 143x). Real embeddings may need more:
    `tuning.tune_search` measures recall on the catalogue itself and picks
    both for a target; `ScannIndex.search(..., leaves_to_search=,
    reorder=)` overrides them per query.

    Args:
      num_items: catalogue size.
      dim: embedding size.
      num_neighbors: the usual number of results (k).

    Returns:
      The parameters for `ScannIndex.build`.

    Raises:
      ValueError: when a size is not positive.
    """
    if num_items < 1 or dim < 1 or num_neighbors < 1:
        raise ValueError(
            f"choose_index_params(num_items={num_items}, dim={dim}, "
            f"num_neighbors={num_neighbors}) needs positive sizes."
        )
    if num_items < BRUTE_FORCE_BELOW:
        return IndexParams("brute_force", num_neighbors)
    reorder = max(100, 10 * num_neighbors)
    reorder_dtype = "bfloat16" if num_items >= BFLOAT16_FROM else "float32"
    if num_items < TREE_FROM:
        return IndexParams("ah", num_neighbors, reorder=reorder)
    num_leaves = int(round(np.sqrt(num_items)))
    return IndexParams(
        "tree_ah",
        num_neighbors,
        num_leaves=num_leaves,
        num_leaves_to_search=max(1, int(round(0.05 * num_leaves))),
        reorder=reorder,
        reorder_dtype=reorder_dtype,
    )


def training_rows(num_items: int, params: IndexParams) -> int:
    """Rows a partitioned index trains on before the rest are added."""
    return min(
        num_items,
        max(_TRAINING_SAMPLE, _SAMPLE_ROWS_PER_LEAF * params.num_leaves),
    )


def estimate_memory(num_items: int, dim: int, params: IndexParams) -> int:
    """Bytes a build holds at its peak, beyond the catalogue itself (which
    may be memory-mapped from disk) and the process: ScaNN's working copy
    of the rows it trains on (about 3x their float32 bytes, measured), the
    rescoring copy, AH codes (half a byte per block), leaf assignments and
    the row order. An estimate from measured builds (bench.index_scale), to
    refuse a build that cannot fit before it starts.
    """
    if params.mode == "brute_force":
        return 3 * num_items * dim * 4
    trained = (
        training_rows(num_items, params)
        if params.mode == "tree_ah"
        else num_items
    )
    value_bytes = REORDER_DTYPES[params.reorder_dtype][0]
    blocks = -(-dim // params.dimensions_per_block)
    copies = 2 if params.soar_lambda else 1  # SOAR files items twice
    per_item = value_bytes * dim + copies * (blocks // 2 + 1 + 4) + 8
    return 3 * trained * dim * 4 + num_items * per_item


def check_fits(
    num_items: int,
    dim: int,
    params: IndexParams,
    available: int,
    catalogue_in_memory: bool,
) -> None:
    """Refuses, in one line, a build that would not fit in `available`
    bytes, before any of it is done.

    Args:
      num_items, dim: the catalogue's size.
      params: how the index would be built.
      available: bytes the build may use (`memory.available_bytes()`).
      catalogue_in_memory: the embeddings are held in memory (just
        embedded) rather than memory-mapped from disk (merged shards),
        which the page cache gives back.

    Raises:
      ValueError: naming the memory needed and available.
    """
    need = estimate_memory(num_items, dim, params)
    if catalogue_in_memory:
        need += num_items * dim * 4
    if need > available:
        cheaper = (
            " or --reorder_dtype=int8"
            if params.mode != "brute_force" and params.reorder_dtype != "int8"
            else ""
        )
        raise ValueError(
            f"A {params.mode} ScaNN index of {num_items:,} x {dim} "
            f"({params.reorder_dtype} rescoring) needs about "
            f"{need / 2**30:.1f} GiB to build; {available / 2**30:.1f} GiB "
            "is available. Embed in shards and build with --merge_shards "
            f"(the catalogue then stays on disk){cheaper}."
        )


def _scann_version() -> str:
    return importlib.metadata.version("scann")


def _builder(
    rows: np.ndarray, params: IndexParams
) -> scann_builder.ScannBuilder:
    """ScaNN's builder for `params`, training on all of `rows`."""
    builder = scann_ops_pybind.builder(
        rows, params.num_neighbors, "dot_product"
    )
    if params.mode == "brute_force":
        return builder.score_brute_force()
    sample = min(len(rows), _TRAINING_SAMPLE)
    if params.mode == "tree_ah":
        sample = len(rows)
        builder = builder.tree(
            params.num_leaves,
            params.num_leaves_to_search,
            training_sample_size=sample,
            # Normalised vectors: spherical k-means keeps centroids on the
            # sphere, which partitions inner-product space better.
            spherical=True,
            soar_lambda=params.soar_lambda,
        )
    builder = builder.score_ah(
        params.dimensions_per_block,
        anisotropic_quantization_threshold=(
            params.anisotropic_quantization_threshold
        ),
        training_sample_size=sample,
    )
    return builder.reorder(
        params.reorder, quantize=REORDER_DTYPES[params.reorder_dtype][1]
    )


def _make_searcher(
    embeddings: np.ndarray, params: IndexParams
) -> tuple[scann_ops_pybind.ScannSearcher, np.ndarray | None]:
    """The searcher and, when its rows are not the catalogue's, the
    catalogue row of each (`ROW_ORDER_FILE`)."""
    num_items = embeddings.shape[0]
    if params.mode != "tree_ah":
        return _builder(np.asarray(embeddings), params).build(), None
    # Trains on a random sample, then adds the other rows a slice at a time.
    sampled = training_rows(num_items, params)
    rng = np.random.default_rng(0)
    in_sample = np.zeros(num_items, bool)
    in_sample[rng.choice(num_items, sampled, replace=False)] = True
    sample, rest = np.flatnonzero(in_sample), np.flatnonzero(~in_sample)
    del in_sample
    searcher = _builder(
        np.ascontiguousarray(embeddings[sample]), params
    ).build()
    if not len(rest):
        return searcher, None
    slices = range(0, len(rest), _ADD_ROWS)
    for start in progress.track(
        slices,
        len(rest),
        "Adding rows to the ScaNN index",
        unit="rows",
        size=lambda start: min(_ADD_ROWS, len(rest) - start),
    ):
        rows = rest[start : start + _ADD_ROWS]
        # ScannSearcher.upsert would keep a Python id per row (GBs at 10M);
        # the pybind searcher's own takes None for "a new row".
        searcher.searcher.upsert(
            [None] * len(rows),
            np.ascontiguousarray(embeddings[rows]),
            len(rows),
        )
    return searcher, np.concatenate([sample, rest])


class ScannIndex(indexes.CatalogIndex):
    """A searchable catalogue: ScaNN searcher, item ids and manifest.

    Attributes:
      manifest: `CatalogIndex`'s entries, params, scann_version and, when
        `tuning.tune_search` chose the params, its `Tuning` record under
        "tuning".
      params: the `IndexParams` search uses by default.
    """

    kind = "scann"

    def __init__(
        self,
        searcher: scann_ops_pybind.ScannSearcher,
        item_ids: list[str],
        manifest: dict,
        directory: str | None = None,
        row_order: np.ndarray | None = None,
    ):
        super().__init__(item_ids, manifest, directory)
        self._searcher = searcher
        # The catalogue row of each searcher row, when they differ.
        self._row_order = row_order
        self.params = IndexParams(**manifest["params"])

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        model_identity: dict,
        settings: IndexParams | None = None,
    ) -> "ScannIndex":
        """Builds a ScaNN index over catalogue embeddings.

        Args:
          embeddings: (N, D) L2-normalised float32, row i for `item_ids[i]`.
          item_ids: N unique string ids.
          model_identity: the model the embeddings came from, stored as
            given; must hold `model_name`, `model_version`,
            `signature_fingerprint` and `embedding_dim` (equal to D), and be
            JSON-serialisable.
          settings: how to build the searcher; `choose_index_params` by
            default.

        Returns:
          The index, in memory; `index_dir.write_index` writes it.

        Raises:
          ValueError: when the embeddings, ids, identity or params are
            invalid.
        """
        embeddings, item_ids = indexes.check_build_inputs(
            embeddings, item_ids, model_identity
        )
        num_items, dim = embeddings.shape
        params = (
            choose_index_params(num_items, dim)
            if settings is None
            else settings
        )
        if params.mode == "tree_ah" and params.num_leaves > num_items:
            raise ValueError(
                f"num_leaves={params.num_leaves} exceeds the {num_items} "
                "items; use about sqrt(N) = "
                f"{int(round(np.sqrt(num_items)))}."
            )
        logging.info(
            "Building a %s ScaNN index over %d x %d embeddings: %s",
            params.mode,
            num_items,
            dim,
            params,
        )
        started = time.monotonic()
        searcher, row_order = _make_searcher(embeddings, params)
        manifest = indexes.new_manifest(cls.kind, model_identity, embeddings)
        manifest["build_seconds"] = round(time.monotonic() - started, 1)
        manifest["params"] = dataclasses.asdict(params)
        manifest["scann_version"] = _scann_version()
        if params.mode == "tree_ah":
            manifest["training_rows"] = training_rows(num_items, params)
        return cls(searcher, item_ids, manifest, row_order=row_order)

    def with_manifest(self, manifest: dict) -> "ScannIndex":
        """The same searcher and row order under another manifest (tuning
        changes the default search setting, not the searcher)."""
        return ScannIndex(
            self._searcher,
            self.item_ids,
            manifest,
            self.directory,
            self._row_order,
        )

    @classmethod
    def check_manifest(cls, manifest: dict) -> None:
        """Raises unless manifest["params"] makes a valid `IndexParams`."""
        IndexParams(**manifest["params"])

    @property
    def summary(self) -> str:
        return f"{self.kind} {self.params.mode} ({self.params.reorder_dtype})"

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        leaves_to_search: int | None = None,
        reorder: int | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Finds the k catalogue items with the largest inner product.

        Args:
          queries: (Q, D) float32 query embeddings.
          k: results per query, 1 <= k <= num_items.
          leaves_to_search: overrides `params.num_leaves_to_search`
            ("tree_ah" only), for tuning recall against speed.
          reorder: overrides `params.reorder` (AH modes only).

        Returns:
          ids: Q lists of k item ids, best first.
          scores: (Q, k) float32 inner products, matching `ids`.

        Raises:
          ValueError: when the queries or k do not fit the index.
        """
        return super().search(
            queries, k, leaves_to_search=leaves_to_search, reorder=reorder
        )

    def _search_rows(
        self,
        queries: np.ndarray,
        k: int,
        leaves_to_search: int | None = None,
        reorder: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` on checked queries, giving (Q, k) rows instead of ids."""
        params = self.params
        pre_reorder, leaves = None, None
        if params.mode != "brute_force":
            # Rescoring at least k candidates keeps every score exact.
            pre_reorder = max(reorder or params.reorder, k)
        if params.mode == "tree_ah":
            # Passed explicitly: tuning may have changed the manifest's value
            # after the searcher was built with another.
            leaves = leaves_to_search or params.num_leaves_to_search
        rows, scores = self._searcher.search_batched_parallel(
            queries, k, pre_reorder, leaves
        )
        rows, scores = np.array(rows, np.int64), np.array(scores, np.float32)
        # ScaNN pads with NaN when the searched leaves hold fewer than k
        # items; search all leaves for those queries.
        short = np.flatnonzero(np.isnan(scores).any(axis=1))
        if len(short) and params.mode == "tree_ah":
            more_rows, more_scores = self._searcher.search_batched(
                queries[short], k, pre_reorder, params.num_leaves
            )
            rows[short], scores[short] = more_rows, more_scores
        if self._row_order is not None:
            rows = self._row_order[rows]
        return rows, scores

    def save(self, folder: str) -> None:
        """Serialises the ScaNN searcher into `folder` (created if needed).

        Asset paths are recorded relative to it, so the folder can be renamed
        or moved afterwards.
        """
        os.makedirs(folder, exist_ok=True)
        self._searcher.serialize(folder, relative_path=True)
        if self._row_order is not None:
            np.save(os.path.join(folder, ROW_ORDER_FILE), self._row_order)

    @classmethod
    def load(
        cls,
        folder: str,
        item_ids: list[str],
        embeddings: np.ndarray,
        manifest: dict,
        directory: str,
    ) -> "ScannIndex":
        """Loads a searcher `save` wrote, with its rows' ids.

        ScaNN crashes the process on a corrupt file instead of raising, so
        the caller verifies the files first (`index_dir.load_index` does).
        The searcher holds its own copy of the embeddings.

        Raises:
          ValueError: ScaNN cannot read the folder, or it holds another
            number of items than `item_ids`.
        """
        del embeddings  # ScaNN's own copy is in `folder`.
        try:
            searcher = scann_ops_pybind.load_searcher(
                folder, assets_backcompat_shim=False
            )
        except Exception as error:  # ScaNN raises bare RuntimeErrors.
            raise ValueError(
                f"Index {directory} has an unreadable ScaNN searcher in "
                f"{folder}: {error} ({indexes.REBUILD_HINT})."
            ) from error
        if searcher.size() != len(item_ids):
            raise ValueError(
                f"Index {directory} has a ScaNN searcher of "
                f"{searcher.size()} items but lists {len(item_ids)} item "
                f"ids; it is corrupt ({indexes.REBUILD_HINT})."
            )
        row_order = None
        order_path = os.path.join(folder, ROW_ORDER_FILE)
        if os.path.exists(order_path):
            row_order = np.load(order_path)
            if row_order.shape != (len(item_ids),) or not np.array_equal(
                np.sort(row_order), np.arange(len(item_ids))
            ):
                raise ValueError(
                    f"Index {directory} has a {ROW_ORDER_FILE} that is not "
                    f"an order of its {len(item_ids)} rows; it is corrupt "
                    f"({indexes.REBUILD_HINT})."
                )
        return cls(searcher, item_ids, manifest, directory, row_order)
