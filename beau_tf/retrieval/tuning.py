"""Tuning a ScaNN index's search for a target recall, against exact search.

`tune_search` measures recall@k on a sample of the catalogue's own rows for
`tuning_grid`'s (leaves searched, candidates rescored) settings, cheapest
first, and keeps the first that reaches the target; the choice becomes the
index's default search and its `Tuning` record goes into the manifest.
Exact search (`metrics.rank_exact`) is the oracle, and recall is
`metrics.recall_against_exact`.
"""

import dataclasses
from collections.abc import Sequence

from absl import logging
import numpy as np

from beau_tf.retrieval import metrics
from beau_tf.retrieval import scann_index

# Tuning the search-time knobs (`tune_search`). Settings are tried from the
# cheapest by an estimated cost in "AH-scored points" per query: one exact
# rescoring costs about as much as AH-scoring 64 points (measured at 1M x
# 256-d on this project's 2-core CPU: ~0.6 us per rescored candidate, ~9.5 ns
# per AH-scored point), so searching one more leaf of 1,000 points costs
# about 16 more rescored candidates.
RESCORE_COST_IN_POINTS = 64
TUNING_LEAF_FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
# Also tried whatever the fractions give: one to three leaves (a thousand
# leaves of clustered catalogues often need two, bench/RESULTS.md "Scale").
TUNING_FEW_LEAVES = (1, 2, 3)
TUNING_REORDER_FACTORS = (1, 2, 5, 10, 20, 50)  # times num_neighbors
DEFAULT_TUNING_QUERIES = 1000


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


def tuning_grid(
    params: scann_index.IndexParams, num_items: int
) -> list[tuple[int, int]]:
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
        | {min(params.num_leaves, few) for few in TUNING_FEW_LEAVES}
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


def _without_own_row(rows: np.ndarray, own: np.ndarray) -> np.ndarray:
    """(Q, k+1) rows less each query's own row (or the last): (Q, k)."""
    keep = rows != own[:, None]
    keep[keep.all(axis=1), -1] = False
    return rows[keep].reshape(len(rows), rows.shape[1] - 1)


def tune_search(
    index: scann_index.ScannIndex,
    embeddings: np.ndarray,
    target_recall: float,
    *,
    num_queries: int = DEFAULT_TUNING_QUERIES,
    seed: int = 0,
    grid: Sequence[tuple[int, int]] | None = None,
) -> scann_index.ScannIndex:
    """Picks the cheapest search setting whose recall@k reaches a target.

    A random sample of the catalogue's own rows serves as queries, and each
    query's own row is left out of both the exact and the ScaNN answers, so
    recall is measured on its neighbours, as a new photo of that product
    would meet them. Exact inner-product search (NumPy) is the oracle; k is
    the index's `num_neighbors`. `tuning_grid`'s settings are measured from
    the cheapest until one reaches `target_recall`; when none does, the one
    with the best recall is taken and a warning gives the recall reached.
    ScaNN's brute-force mode is exact: nothing is measured and recall 1.0
    is recorded.

    Args:
      index: a built ScaNN index over `embeddings`.
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
      ValueError: an index of another type, a target outside [0, 1], no
        queries, or embeddings that are not the index's rows.
    """
    if not isinstance(index, scann_index.ScannIndex):
        raise ValueError(
            f"A target recall tunes ScaNN's search; a {index.kind} index has "
            "no search setting to tune (build a scann index, or leave the "
            "target out)."
        )
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
    exact_rows, _ = metrics.rank_exact(queries, embeddings, k + 1)
    true = _without_own_row(exact_rows, own)
    grid = list(tuning_grid(params, index.num_items) if grid is None else grid)
    measured = []
    for leaves, reorder in grid:
        found, _ = index._search_rows(  # pylint: disable=protected-access
            queries, k + 1, leaves or None, reorder
        )
        recall = metrics.recall_against_exact(
            _without_own_row(found, own), true, k
        )
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
    index: scann_index.ScannIndex,
    params: scann_index.IndexParams,
    tuning: Tuning,
) -> scann_index.ScannIndex:
    manifest = dict(
        index.manifest,
        params=dataclasses.asdict(params),
        tuning=dataclasses.asdict(tuning),
    )
    return index.with_manifest(manifest)
