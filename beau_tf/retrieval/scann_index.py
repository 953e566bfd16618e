"""A ScaNN searcher over catalogue embeddings, with the ids of its rows.

`build_index` picks ScaNN's configuration from the catalogue's size and builds
a `CatalogIndex` in memory; `tune_search` optionally picks its search-time
knobs (leaves searched, candidates rescored) for a target recall, measured
against exact search; `beau_tf.retrieval.index_dir` writes it (with the
embeddings and item ids) to an index folder and loads it back.
`CatalogIndex.check_compatible` refuses a model whose name, version, signature,
model fingerprint or embedding size differ from the ones the index was built
with, since its vectors would live in another space.

Embeddings are L2-normalised, so the inner product ScaNN scores with is the
cosine similarity.
"""

import dataclasses
import datetime
import importlib.metadata
import json
from collections.abc import Sequence

from absl import logging
import numpy as np
from scann.scann_ops.py import scann_ops_pybind

MODES = ("brute_force", "ah", "tree_ah")
IDENTITY_KEYS = (
    "model_name",
    "model_version",
    "signature_fingerprint",
    "embedding_dim",
)
# Compared by `check_compatible` besides IDENTITY_KEYS; exports older than
# the model fingerprint lack it, so an index need not hold it.
MODEL_FINGERPRINT_KEY = "model_fingerprint"
REBUILD_HINT = "rebuild the index with python -m beau_tf.index"

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
    """

    mode: str
    num_neighbors: int
    num_leaves: int = 0
    num_leaves_to_search: int = 0
    dimensions_per_block: int = 2
    anisotropic_quantization_threshold: float = 0.2
    reorder: int = 0

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
    `tune_search` measures recall on the catalogue itself and picks both
    for a target; `CatalogIndex.search(..., leaves_to_search=, reorder=)`
    overrides them per query.

    Args:
      num_items: catalogue size.
      dim: embedding size.
      num_neighbors: the usual number of results (k).

    Returns:
      The parameters for `build_index`.

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
    if num_items < TREE_FROM:
        return IndexParams("ah", num_neighbors, reorder=reorder)
    num_leaves = int(round(np.sqrt(num_items)))
    return IndexParams(
        "tree_ah",
        num_neighbors,
        num_leaves=num_leaves,
        num_leaves_to_search=max(1, int(round(0.05 * num_leaves))),
        reorder=reorder,
    )


def _scann_version() -> str:
    return importlib.metadata.version("scann")


def _make_searcher(
    embeddings: np.ndarray, params: IndexParams
) -> scann_ops_pybind.ScannSearcher:
    num_items = embeddings.shape[0]
    builder = scann_ops_pybind.builder(
        embeddings, params.num_neighbors, "dot_product"
    )
    if params.mode == "brute_force":
        return builder.score_brute_force().build()
    sample = min(num_items, _TRAINING_SAMPLE)
    if params.mode == "tree_ah":
        builder = builder.tree(
            params.num_leaves,
            params.num_leaves_to_search,
            training_sample_size=sample,
            # Normalised vectors: spherical k-means keeps centroids on the
            # sphere, which partitions inner-product space better.
            spherical=True,
        )
    builder = builder.score_ah(
        params.dimensions_per_block,
        anisotropic_quantization_threshold=(
            params.anisotropic_quantization_threshold
        ),
        training_sample_size=sample,
    )
    return builder.reorder(params.reorder).build()


def _check_embeddings(embeddings: np.ndarray, item_ids: Sequence[str]):
    if embeddings.ndim != 2 or embeddings.shape[0] < 1:
        raise ValueError(
            f"Embeddings have shape {embeddings.shape}; expected (N, D) with "
            "N >= 1 items."
        )
    if not np.all(np.isfinite(embeddings)):
        rows = np.flatnonzero(~np.all(np.isfinite(embeddings), axis=1))
        raise ValueError(
            f"Embeddings of {len(rows)} items are not finite (first: row "
            f"{rows[0]}, item {item_ids[rows[0]]!r}); re-embed them."
        )
    norms = np.linalg.norm(embeddings, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > 1e-3)
    if len(bad):
        raise ValueError(
            f"Embeddings of {len(bad)} items are not L2-normalised (row "
            f"{bad[0]}, item {item_ids[bad[0]]!r}, has norm "
            f"{norms[bad[0]]:.4f}); normalise with "
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


def build_index(
    embeddings: np.ndarray,
    item_ids: Sequence[str],
    model_identity: dict,
    params: IndexParams | None = None,
) -> "CatalogIndex":
    """Builds a ScaNN index over catalogue embeddings.

    Args:
      embeddings: (N, D) L2-normalised float32, row i for `item_ids[i]`.
      item_ids: N unique string ids.
      model_identity: the model the embeddings came from, stored as given;
        must hold `model_name`, `model_version`, `signature_fingerprint` and
        `embedding_dim` (equal to D), and be JSON-serialisable.
      params: how to build the searcher; `choose_index_params` by default.

    Returns:
      The index, in memory; `save` writes it.

    Raises:
      ValueError: when the embeddings, ids, identity or params are invalid.
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
    if params is None:
        params = choose_index_params(num_items, dim)
    if params.mode == "tree_ah" and params.num_leaves > num_items:
        raise ValueError(
            f"num_leaves={params.num_leaves} exceeds the {num_items} items; "
            f"use about sqrt(N) = {int(round(np.sqrt(num_items)))}."
        )
    logging.info(
        "Building a %s ScaNN index over %d x %d embeddings: %s",
        params.mode,
        num_items,
        dim,
        params,
    )
    searcher = _make_searcher(embeddings, params)
    manifest = {
        "model_identity": json.loads(json.dumps(model_identity)),
        "num_items": num_items,
        "embedding_dim": dim,
        "params": dataclasses.asdict(params),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "scann_version": _scann_version(),
    }
    return CatalogIndex(searcher, item_ids, manifest)


# Tuning the search-time knobs (`tune_search`). Settings are tried from the
# cheapest by an estimated cost in "AH-scored points" per query: one exact
# rescoring costs about as much as AH-scoring 64 points (measured at 1M x
# 256-d on this project's 2-core CPU: ~0.6 us per rescored candidate, ~9.5 ns
# per AH-scored point), so searching one more leaf of 1,000 points costs
# about 16 more rescored candidates.
RESCORE_COST_IN_POINTS = 64
TUNING_LEAF_FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
TUNING_REORDER_FACTORS = (1, 2, 5, 10, 20, 50)  # times num_neighbors
DEFAULT_TUNING_QUERIES = 1000
# Scores held at once by the oracle: (B, N) float32 with B * N of this.
_ORACLE_SCORES = 100_000_000


@dataclasses.dataclass(frozen=True)
class Tuning:
    """What `tune_search` chose and measured; stored as manifest["tuning"].

    Attributes:
      target_recall: the recall@k asked for.
      k: the k of recall@k (the index's `num_neighbors`).
      num_queries: catalogue rows used as queries (0 for brute force).
      recall: recall@k measured with the chosen setting (1.0 for brute
        force, which is exact).
      met: whether `recall` reaches `target_recall`.
      num_leaves_to_search: the chosen value ("tree_ah"; 0 otherwise).
      reorder: the chosen candidates rescored (AH modes; 0 otherwise).
      settings_tried: grid settings measured before choosing.
    """

    target_recall: float
    k: int
    num_queries: int
    recall: float
    met: bool
    num_leaves_to_search: int
    reorder: int
    settings_tried: int


def tuning_grid(params: IndexParams, num_items: int) -> list[tuple[int, int]]:
    """The (num_leaves_to_search, reorder) settings to try, cheapest first.

    Args:
      params: the index's parameters ("ah" or "tree_ah").
      num_items: catalogue size.

    Returns:
      Settings ordered by estimated cost per query: AH-scored points (the
      searched leaves' share of the catalogue; all of it for "ah") plus
      `RESCORE_COST_IN_POINTS` per rescored candidate. Leaves are 0 for "ah".
    """
    k = params.num_neighbors
    reorders = sorted(
        {min(num_items, f * k) for f in TUNING_REORDER_FACTORS} - {0}
    )
    if params.mode == "ah":
        return [(0, reorder) for reorder in reorders]
    leaves = sorted(
        {
            min(params.num_leaves, max(1, int(round(f * params.num_leaves))))
            for f in TUNING_LEAF_FRACTIONS
        }
    )
    points_per_leaf = num_items / params.num_leaves

    def cost(setting):
        leaf, reorder = setting
        return (
            leaf * points_per_leaf + RESCORE_COST_IN_POINTS * reorder,
            leaf,
            reorder,
        )

    return sorted(((l, r) for l in leaves for r in reorders), key=cost)


def exact_top_k(
    embeddings: np.ndarray, queries: np.ndarray, k: int
) -> np.ndarray:
    """The NumPy oracle: (Q, k) rows of the largest inner products, best first.

    Args:
      embeddings: (N, D) float32 catalogue.
      queries: (Q, D) float32.
      k: neighbours per query, at most N.
    """
    rows = np.empty((len(queries), k), np.int64)
    batch = max(1, _ORACLE_SCORES // len(embeddings))  # 400 MB of scores
    for start in range(0, len(queries), batch):
        scores = queries[start : start + batch] @ embeddings.T  # (B, N)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k)
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        rows[start : start + batch] = np.take_along_axis(top, order, axis=1)
    return rows


def recall_at_k(found: np.ndarray, true: np.ndarray) -> float:
    """Share of the (Q, k) true rows that the (Q, k) found rows contain."""
    hits = sum(
        len(np.intersect1d(f, t, assume_unique=True))
        for f, t in zip(found, true)
    )
    return hits / true.size


def _without_own_row(rows: np.ndarray, own: np.ndarray) -> np.ndarray:
    """(Q, k+1) rows less each query's own row (or the last): (Q, k)."""
    keep = rows != own[:, None]
    keep[keep.all(axis=1), -1] = False
    return rows[keep].reshape(len(rows), rows.shape[1] - 1)


def tune_search(
    index: "CatalogIndex",
    embeddings: np.ndarray,
    target_recall: float,
    *,
    num_queries: int = DEFAULT_TUNING_QUERIES,
    seed: int = 0,
    grid: Sequence[tuple[int, int]] | None = None,
) -> "CatalogIndex":
    """Picks the cheapest search setting whose recall@k reaches a target.

    A random sample of the catalogue's own rows serves as queries, and each
    query's own row is left out of both the exact and the ScaNN answers, so
    recall is measured on its neighbours, as a new photo of that product
    would meet them. Exact inner-product search (NumPy) is the oracle; k is
    the index's `num_neighbors`. `tuning_grid`'s settings are measured from
    the cheapest until one reaches `target_recall`; when none does, the one
    with the best recall is taken and a warning gives the recall reached.
    Brute force is exact: nothing is measured and recall 1.0 is recorded.

    Args:
      index: a built index over `embeddings`.
      embeddings: (N, D) the rows `index` was built from.
      target_recall: recall@k wanted, in [0, 1] (0 takes the cheapest).
      num_queries: catalogue rows sampled as queries (at most N).
      seed: seeds the sample.
      grid: (num_leaves_to_search, reorder) settings, cheapest first;
        `tuning_grid` by default.

    Returns:
      The same searcher with the chosen setting as its `params` and a
      `Tuning` record as manifest["tuning"].

    Raises:
      ValueError: a target outside [0, 1], no queries, or embeddings that
        are not the index's rows.
    """
    if not 0 <= target_recall <= 1:
        raise ValueError(
            f"target_recall={target_recall} must be in [0, 1], e.g. 0.95."
        )
    if num_queries < 1:
        raise ValueError(f"num_queries={num_queries} must be at least 1.")
    params, k = index.params, index.params.num_neighbors
    if embeddings.shape != (index.num_items, index.embedding_dim):
        raise ValueError(
            f"embeddings of shape {embeddings.shape} for an index of "
            f"{index.num_items} x {index.embedding_dim}."
        )
    if params.mode == "brute_force":
        logging.info(
            "Brute-force index: search is exact (recall@%d 1.0); nothing to "
            "tune for target %.3f.",
            k,
            target_recall,
        )
        tuning = Tuning(target_recall, k, 0, 1.0, True, 0, 0, 0)
        return _with_tuning(index, params, tuning)
    if index.num_items <= k:
        raise ValueError(
            f"An index of {index.num_items} items cannot measure recall@{k} "
            f"with its own rows as queries; it needs more than {k} items."
        )
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    rng = np.random.default_rng(seed)
    own = np.sort(
        rng.choice(
            index.num_items, min(num_queries, index.num_items), replace=False
        )
    )
    queries = embeddings[own]
    true = _without_own_row(exact_top_k(embeddings, queries, k + 1), own)
    grid = list(tuning_grid(params, index.num_items) if grid is None else grid)
    measured = []
    for leaves, reorder in grid:
        found, _ = index._search_rows(  # pylint: disable=protected-access
            queries, k + 1, leaves or None, reorder
        )
        recall = recall_at_k(_without_own_row(found, own), true)
        logging.debug(
            "leaves_to_search=%d reorder=%d: recall@%d %.4f",
            leaves,
            reorder,
            k,
            recall,
        )
        measured.append((recall, leaves, reorder))
        if recall >= target_recall:
            break
    # The first best: cheapest among equals, the grid being cheapest first.
    recall, leaves, reorder = max(measured, key=lambda m: m[0])
    met = recall >= target_recall
    if not met:
        logging.warning(
            "No search setting reaches recall@%d %.3f on %d catalogue "
            "queries; the best tried (leaves_to_search=%d, reorder=%d) "
            "reaches %.4f and is used. Lower --target_recall, or check the "
            "embeddings: uniformly spread vectors have no neighbourhoods to "
            "find.",
            k,
            target_recall,
            len(own),
            leaves,
            reorder,
            recall,
        )
    tuned = dataclasses.replace(
        params,
        num_leaves_to_search=leaves or params.num_leaves_to_search,
        reorder=reorder,
    )
    tuning = Tuning(
        target_recall,
        k,
        len(own),
        recall,
        met,
        tuned.num_leaves_to_search,
        reorder,
        len(measured),
    )
    logging.info("Tuned search: %s", tuning)
    return _with_tuning(index, tuned, tuning)


def _with_tuning(
    index: "CatalogIndex", params: IndexParams, tuning: Tuning
) -> "CatalogIndex":
    manifest = dict(
        index.manifest,
        params=dataclasses.asdict(params),
        tuning=dataclasses.asdict(tuning),
    )
    return CatalogIndex(
        index._searcher,  # pylint: disable=protected-access
        index.item_ids,
        manifest,
        index.directory,
    )


def _short(fingerprint) -> str:
    text = str(fingerprint)
    return text if len(text) <= 12 else text[:12] + "…"


def _describe(identity: dict) -> str:
    fingerprint = identity.get(MODEL_FINGERPRINT_KEY)
    weights = (
        f"model fingerprint {_short(fingerprint)}"
        if fingerprint
        else "no model fingerprint"
    )
    return (
        f"model {identity.get('model_name')} version "
        f"{identity.get('model_version')} (signature "
        f"{_short(identity.get('signature_fingerprint'))}, {weights}, "
        f"{identity.get('embedding_dim')}-d embeddings)"
    )


class CatalogIndex:
    """A searchable catalogue: ScaNN searcher, item ids and manifest.

    Attributes:
      manifest: model identity, num_items, embedding_dim, params, created
        (UTC ISO time), scann_version and, when `tune_search` chose the
        params, its `Tuning` record under "tuning".
      item_ids: the id of each indexed row.
      directory: where it was saved or loaded from, or None.
    """

    def __init__(
        self,
        searcher: scann_ops_pybind.ScannSearcher,
        item_ids: list[str],
        manifest: dict,
        directory: str | None = None,
    ):
        self._searcher = searcher
        self.item_ids = item_ids
        self.manifest = manifest
        self.directory = directory
        self.params = IndexParams(**manifest["params"])
        self._ids = np.asarray(item_ids, dtype=object)

    @property
    def num_items(self) -> int:
        return self.manifest["num_items"]

    @property
    def embedding_dim(self) -> int:
        return self.manifest["embedding_dim"]

    def _where(self) -> str:
        return self.directory or "(in memory)"

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
        rows, scores = self._search_rows(queries, k, leaves_to_search, reorder)
        return self._ids[rows].tolist(), scores

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
        return rows, scores

    def write_searcher(self, scann_dir: str) -> None:
        """Serialises the ScaNN searcher into the existing folder `scann_dir`.

        Asset paths are recorded relative to it, so the folder can be renamed
        or moved afterwards.
        """
        self._searcher.serialize(scann_dir, relative_path=True)

    @classmethod
    def read_searcher(
        cls, scann_dir: str, item_ids: list[str], manifest: dict, directory: str
    ) -> "CatalogIndex":
        """Loads a searcher `write_searcher` wrote, with its rows' ids.

        ScaNN crashes the process on a corrupt file instead of raising, so
        the caller verifies the files first (`index_dir.load_index` does).

        Raises:
          ValueError: ScaNN cannot read the folder, or it holds another
            number of items than `item_ids`.
        """
        try:
            searcher = scann_ops_pybind.load_searcher(
                scann_dir, assets_backcompat_shim=False
            )
        except Exception as error:  # ScaNN raises bare RuntimeErrors.
            raise ValueError(
                f"Index {directory} has an unreadable ScaNN searcher in "
                f"{scann_dir}: {error} ({REBUILD_HINT})."
            ) from error
        if searcher.size() != len(item_ids):
            raise ValueError(
                f"Index {directory} has a ScaNN searcher of "
                f"{searcher.size()} items but lists {len(item_ids)} item "
                f"ids; it is corrupt ({REBUILD_HINT})."
            )
        return cls(searcher, item_ids, manifest, directory)

    def check_compatible(self, model_identity: dict) -> None:
        """Refuses a model other than the one the index was built with.

        Args:
          model_identity: the serving model's `model_name`,
            `model_version`, `signature_fingerprint`, `model_fingerprint`
            and `embedding_dim`.

        Raises:
          ValueError: naming both models when any of those differ (an index
            without a model fingerprint accepts only a model without one).
        """
        # The serving contract decides compatibility for every path.
        from beau_tf.serving import (  # pylint: disable=g-import-not-at-top
            contract,
        )

        contract.check_compatible(
            self.manifest["model_identity"],
            model_identity,
            f"index {self._where()}",
        )
