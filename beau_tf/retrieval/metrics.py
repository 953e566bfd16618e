"""Retrieval metrics and query-time re-ranking options, in plain NumPy.

Everything after the embeddings lives here: exact (brute-force) ranking,
mAP@k and recall@n over ranked catalogue ids, the recall of an approximate
index (ScaNN) against exact search, α-weighted query expansion and
database-side augmentation, and a small table formatter for the CLI, the
benchmarks and RESULTS.md. No TensorFlow: the functions take NumPy arrays and
Python lists, so evaluation runs anywhere the index does.

Conventions: embeddings are rows, `(Q, D)` for queries and `(N, D)` for the
catalogue, compared by inner product (cosine similarity once L2-normalised);
rankings are best first, and equal scores go to the lower catalogue index so
that results are repeatable.

Typical use, with DBA applied once to the catalogue and α-QE per query:

    database = evaluation.database_side_augmentation(database, k=3)
    queries = evaluation.alpha_query_expansion(queries, database, k=3)
    indices, scores = evaluation.rank_exact(queries, database, k=7)
    ranked = [[item_ids[i] for i in row] for row in indices]
    metrics = evaluation.evaluate_rankings(ranked, relevant, groups, k=7)
"""

import collections
import math
import numbers
from collections.abc import Sequence

import numpy as np

CONVENTIONS = ("hits", "min_relevant")

# Largest (queries x database) score block held at once by `rank_exact`:
# 2**24 float32 scores is 64 MiB, whatever the catalogue size.
_SCORE_BLOCK_ELEMENTS = 2**24
# Queries scored together against each slice of a large database: every
# slice is read once per block, so a 10M-row catalogue (10 GiB) is read
# ceil(Q / 256) times, not Q times.
_MIN_QUERY_BLOCK = 256
# Rows checked at a time by `all_finite`, so a 10M x 256 catalogue never
# needs a 2.5 GB mask.
_FINITE_CHECK_ROWS = 2**16

# Keeps a zero vector zero instead of dividing by zero when normalising.
_NORM_EPSILON = 1e-12


def _check_matrix(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of row vectors, got shape "
            f"{array.shape}."
        )
    return array


def _check_embeddings(
    queries: np.ndarray, database: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    queries = _check_matrix("queries", queries).astype(np.float32, copy=False)
    database = _check_matrix("database", database).astype(
        np.float32, copy=False
    )
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"queries {queries.shape} and database {database.shape} have "
            "different embedding sizes; embed both with the same model."
        )
    return queries, database


def _check_k(k: int, minimum: int = 1) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an integer, got {k!r}.")
    if k < minimum:
        raise ValueError(f"k must be at least {minimum}, got {k}.")
    return int(k)


def _check_alpha(alpha: float) -> float:
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(
            f"alpha must be a finite number >= 0, got {alpha!r} (0 weighs "
            "every neighbour equally, larger values favour the closest)."
        )
    return float(alpha)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (R, 1)
    return (vectors / np.maximum(norms, _NORM_EPSILON)).astype(np.float32)


def rank_exact(
    queries: np.ndarray, database: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks the database for each query by inner product, exactly.

    The brute-force oracle for the approximate index. Scores are computed in
    blocks of queries so memory stays bounded for large catalogues.

    Args:
      queries: `(Q, D)` query embeddings.
      database: `(N, D)` catalogue embeddings.
      k: how many results per query; clipped to `N`.

    Returns:
      `(indices, scores)`: `(Q, min(k, N))` int64 database row indices and
      their float32 inner products, best first, equal scores in increasing
      index order.

    Raises:
      ValueError: if the arrays are not 2-D, their embedding sizes differ,
        they hold NaN or infinity, or `k < 1`.
    """
    queries, database = _check_embeddings(queries, database)
    for name, array in (("queries", queries), ("database", database)):
        if not all_finite(array):
            raise ValueError(
                f"{name} {array.shape} contain NaN or infinite values; check "
                "the model's outputs."
            )
    return rank_exact_unchecked(queries, database, _check_k(k))


def rank_exact_unchecked(
    queries: np.ndarray, database: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """`rank_exact` without its checks, for arrays checked once already.

    The brute-force index checks its catalogue when it is built and each
    query batch as it comes; checking a million finite rows again per query
    would double the cost of a search.

    Args:
      queries: `(Q, D)` finite float32 query embeddings.
      database: `(N, D)` finite float32 catalogue embeddings.
      k: results per query, at least 1; clipped to `N`.

    Returns:
      As `rank_exact`.
    """
    k = min(k, database.shape[0])
    num_queries, num_items = queries.shape[0], database.shape[0]
    indices = np.zeros((num_queries, k), dtype=np.int64)
    scores = np.zeros((num_queries, k), dtype=np.float32)
    if k == 0 or num_queries == 0:
        return indices, scores
    query_block = max(
        1,
        min(
            num_queries,
            max(_MIN_QUERY_BLOCK, _SCORE_BLOCK_ELEMENTS // num_items),
        ),
    )
    item_block = max(k, _SCORE_BLOCK_ELEMENTS // query_block)
    for start in range(0, num_queries, query_block):
        stop = min(start + query_block, num_queries)
        best_indices, best_scores = None, None
        for first in range(0, num_items, item_block):
            block_scores = (
                queries[start:stop] @ database[first : first + item_block].T
            )  # (B, n)
            top = _top_k_rows(
                block_scores, min(k, block_scores.shape[1])
            )  # (B, k')
            top_scores = np.take_along_axis(block_scores, top, axis=1)
            if best_indices is None:
                best_indices, best_scores = top + first, top_scores
                continue
            # Earlier slices hold lower rows, so ties still go to the lower.
            joined_indices = np.concatenate([best_indices, top + first], axis=1)
            joined_scores = np.concatenate([best_scores, top_scores], axis=1)
            keep = _top_k_rows(joined_scores, k)  # (B, k)
            best_indices = np.take_along_axis(joined_indices, keep, axis=1)
            best_scores = np.take_along_axis(joined_scores, keep, axis=1)
        indices[start:stop], scores[start:stop] = best_indices, best_scores
    return indices, scores


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of a 2-D array is finite, checked a slice of rows
    at a time (a memory-mapped catalogue is read, never copied)."""
    return all(
        np.isfinite(array[start : start + _FINITE_CHECK_ROWS]).all()
        for start in range(0, array.shape[0], _FINITE_CHECK_ROWS)
    )


def _top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k column indices of each row of `(B, N)` scores, ties to lower."""
    num_items = scores.shape[1]
    if k == num_items:
        return np.argsort(-scores, axis=1, kind="stable")
    # The k-th largest score of each row; everything above it is in the top
    # k, and of the scores equal to it only the lowest-indexed fill the rest.
    threshold = np.partition(scores, num_items - k, axis=1)[
        :, num_items - k, None
    ]  # (B, 1)
    above = scores > threshold  # (B, N)
    at = scores == threshold  # (B, N)
    keep = above | at  # (B, N)
    places_left = k - above.sum(axis=1)  # (B,)
    # Only rows with more ties than places need the (slow) running count.
    tied = np.flatnonzero(at.sum(axis=1) > places_left)
    if tied.size:
        running = np.cumsum(at[tied], axis=1)  # (T, N)
        keep[tied] = above[tied] | (
            at[tied] & (running <= places_left[tied, None])
        )
    # Exactly k kept per row; nonzero lists them row by row, index ascending.
    candidates = np.nonzero(keep)[1].reshape(-1, k)  # (B, k)
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    # Best score first; the stable sort keeps ties in index order.
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def _check_ids(ranked_ids: Sequence[str], relevant: set[str]) -> None:
    # A bare string would silently be ranked character by character.
    if isinstance(ranked_ids, str):
        raise TypeError(
            f"ranked_ids must be a sequence of ids, got the string "
            f"{ranked_ids!r}; wrap a single id in a list."
        )
    if isinstance(relevant, str):
        raise TypeError(
            f"relevant must be a set of ids, got the string {relevant!r}; "
            "wrap a single id in a set."
        )


def average_precision_at_k(
    ranked_ids: Sequence[str],
    relevant: set[str],
    k: int,
    convention: str,
) -> float:
    """Average precision of one ranked list, cut at `k`.

    The sum of precision@i over the positions i <= k that hold a relevant id,
    divided according to `convention`:

    - `"hits"`: by the number of relevant ids found in the top k (0 when none
      is found), the convention of the Perfect-500K challenge teams.
    - `"min_relevant"`: by `min(len(relevant), k)`, the usual mAP@k (as in
      Kaggle's `apk`), which also charges for relevant ids never retrieved.

    With one relevant id per query, as in beau_tf, both give `1 / rank` of the
    correct item, or 0 when it is not in the top k. An id repeated in the
    ranking counts only where it first appears; later copies are misses.

    Args:
      ranked_ids: catalogue ids, best first; may be shorter or longer than k.
      relevant: the correct ids for the query. Empty gives 0.
      k: the cut-off, at least 1.
      convention: `"hits"` or `"min_relevant"`.

    Returns:
      AP@k in [0, 1].

    Raises:
      ValueError: for `k < 1` or an unknown convention.
      TypeError: for a bare string in place of a list or set.
    """
    k = _check_k(k)
    if convention not in CONVENTIONS:
        raise ValueError(
            f"Unknown AP convention {convention!r}; expected one of "
            f"{', '.join(CONVENTIONS)}."
        )
    _check_ids(ranked_ids, relevant)
    seen = set()
    hits = 0
    precision_sum = 0.0
    for position, item_id in enumerate(ranked_ids[:k], start=1):
        if item_id in relevant and item_id not in seen:
            hits += 1
            precision_sum += hits / position
        seen.add(item_id)
    if convention == "hits":
        denominator = hits
    else:
        denominator = min(len(relevant), k)
    return precision_sum / denominator if denominator else 0.0


def paired_bootstrap_interval(
    differences: np.ndarray,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """How far the mean of paired per-query differences could move.

    Two models scored on the same queries differ per query (AP@k of one
    minus the other's); the queries are resampled with replacement
    `resamples` times and the mean difference taken each time. The
    percentile interval of those means says how sure a difference is: one
    whose interval holds 0 could be the queries' luck.

    Args:
      differences: (Q,) per-query differences, Q >= 1.
      confidence: the interval's coverage, in (0, 1).
      resamples: how many resamples, at least 1.
      seed: the resampling's seed (the interval is repeatable).

    Returns:
      `(low, high)` bounds of the mean difference.

    Raises:
      ValueError: for no or non-finite differences, a confidence outside
        (0, 1) or fewer than one resample.
    """
    differences = np.asarray(differences, dtype=np.float64)
    if differences.ndim != 1 or not differences.size:
        raise ValueError(
            f"differences must be a non-empty (Q,) array, got shape "
            f"{differences.shape}."
        )
    if not np.isfinite(differences).all():
        raise ValueError("differences hold NaN or infinite values.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}.")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    # Resample in blocks so that a large Q never needs (resamples, Q) ints.
    block = max(1, 2**22 // differences.size)
    for start in range(0, resamples, block):
        count = min(block, resamples - start)
        picks = rng.integers(0, differences.size, (count, differences.size))
        means[start : start + count] = differences[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _recall_at(ranked_ids: Sequence[str], relevant: set[str], n: int) -> float:
    return float(any(item_id in relevant for item_id in ranked_ids[:n]))


def _summarise(
    ranked_ids: list[Sequence[str]], relevant: list[set[str]], k: int
) -> dict:
    def mean(values) -> float:
        return float(np.mean(values))

    return {
        "num_queries": len(ranked_ids),
        f"map@{k}_hits": mean(
            [
                average_precision_at_k(r, s, k, "hits")
                for r, s in zip(ranked_ids, relevant)
            ]
        ),
        f"map@{k}_min_relevant": mean(
            [
                average_precision_at_k(r, s, k, "min_relevant")
                for r, s in zip(ranked_ids, relevant)
            ]
        ),
        "recall@1": mean(
            [_recall_at(r, s, 1) for r, s in zip(ranked_ids, relevant)]
        ),
        f"recall@{k}": mean(
            [_recall_at(r, s, k) for r, s in zip(ranked_ids, relevant)]
        ),
    }


def evaluate_rankings(
    ranked_ids: list[list[str]],
    relevant: list[set[str]],
    groups: list[str] | None = None,
    k: int = 7,
) -> dict:
    """mAP@k in both conventions and recall@1 / recall@k over many queries.

    recall@n is the fraction of queries with at least one relevant id in their
    top n results.

    Args:
      ranked_ids: per query, catalogue ids best first.
      relevant: per query, the set of correct ids.
      groups: optional per-query group (e.g. product category) for a
        per-group breakdown.
      k: the cut-off for mAP and the second recall.

    Returns:
      `{"num_queries", f"map@{k}_hits", f"map@{k}_min_relevant", "recall@1",
      f"recall@{k}"}` as an int and Python floats, plus `"by_group"`: a dict
      from group name (sorted) to the same metrics when `groups` is given.

    Raises:
      ValueError: if there are no queries, the lists' lengths differ, or
        `k < 1`.
      TypeError: for a bare string in place of a ranked list or set.
    """
    k = _check_k(k)
    if len(ranked_ids) != len(relevant):
        raise ValueError(
            f"Got {len(ranked_ids)} ranked lists but {len(relevant)} "
            "relevant sets; pass one of each per query."
        )
    if not ranked_ids:
        raise ValueError("No queries to evaluate; the query set is empty.")
    for ranking, correct in zip(ranked_ids, relevant):
        _check_ids(ranking, correct)
    result = _summarise(ranked_ids, relevant, k)
    if groups is not None:
        if len(groups) != len(ranked_ids):
            raise ValueError(
                f"Got {len(groups)} groups for {len(ranked_ids)} queries; "
                "pass one group per query."
            )
        members = collections.defaultdict(list)
        for query, group in enumerate(groups):
            members[group].append(query)
        result["by_group"] = {
            group: _summarise(
                [ranked_ids[q] for q in members[group]],
                [relevant[q] for q in members[group]],
                k,
            )
            for group in sorted(members)
        }
    return result


def recall_against_exact(
    approx_indices: np.ndarray, exact_indices: np.ndarray, k: int
) -> float:
    """Recall of approximate search against brute force, as ScaNN reports it.

    The mean over queries of |approximate top k ∩ exact top k| / k.

    Args:
      approx_indices: `(Q, >= k)` database indices from the approximate
        index, best first.
      exact_indices: `(Q, >= k)` indices from `rank_exact`, best first.
      k: how many leading columns of each to compare.

    Returns:
      The recall in [0, 1].

    Raises:
      ValueError: if the arrays are not 2-D, have different numbers of
        queries, no queries, fewer than k columns, or `k < 1`.
    """
    k = _check_k(k)
    approx = _check_matrix("approx_indices", approx_indices)
    exact = _check_matrix("exact_indices", exact_indices)
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(
            f"approx_indices {approx.shape} and exact_indices {exact.shape} "
            "hold different numbers of queries."
        )
    if approx.shape[0] == 0:
        raise ValueError(
            "No queries: approx_indices and exact_indices are empty."
        )
    for name, array in (("approx_indices", approx), ("exact_indices", exact)):
        if array.shape[1] < k:
            raise ValueError(
                f"{name} has shape {array.shape}, fewer than k={k} columns; "
                "search with at least k results or lower k."
            )
    overlaps = [
        len(set(a[:k].tolist()) & set(e[:k].tolist()))
        for a, e in zip(approx, exact)
    ]
    return float(np.mean(overlaps) / k)


def _expand(
    vectors: np.ndarray,
    neighbours: np.ndarray,
    scores: np.ndarray,
    database: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """normalise(v + Σ_i max(s_i, 0)^α · d_i) for each row v."""
    weights = np.maximum(scores, 0.0).astype(np.float64) ** alpha  # (R, k)
    neighbour_vectors = database[neighbours].astype(np.float64)  # (R, k, D)
    expanded = vectors.astype(np.float64) + np.einsum(
        "rk,rkd->rd", weights, neighbour_vectors
    )  # (R, D)
    return _normalise(expanded)


def alpha_query_expansion(
    queries: np.ndarray,
    database: np.ndarray,
    k: int = 3,
    alpha: float = 3.0,
) -> np.ndarray:
    """α-weighted query expansion (α-QE, Radenović et al., 2018).

    Each query becomes normalise(q + Σ_{i<=k} max(s_i, 0)^α · d_i) over its
    top-k database neighbours d_i with scores s_i. A large α keeps only the
    near-duplicates' pull; α = 0 gives each of the k neighbours weight 1, like
    the query itself (average query expansion).

    Args:
      queries: `(Q, D)` L2-normalised query embeddings.
      database: `(N, D)` L2-normalised catalogue embeddings (after DBA, if
        used).
      k: neighbours to add, clipped to N; 0 turns the expansion off.
      alpha: weight exponent, >= 0.

    Returns:
      `(Q, D)` float32 L2-normalised expanded queries.

    Raises:
      ValueError: for mismatched shapes, `k < 0` or a negative alpha.
    """
    queries, database = _check_embeddings(queries, database)
    k = _check_k(k, minimum=0)
    alpha = _check_alpha(alpha)
    if k == 0 or database.shape[0] == 0:
        return _normalise(queries)
    neighbours, scores = rank_exact(queries, database, k)  # (Q, k)
    return _expand(queries, neighbours, scores, database, alpha)


def database_side_augmentation(
    database: np.ndarray, k: int = 3, alpha: float = 3.0
) -> np.ndarray:
    """Database-side augmentation (DBA) with α weights.

    Each catalogue vector d becomes normalise(d + Σ_{i<=k} max(s_i, 0)^α ·
    d_i) over its top-k other catalogue vectors d_i, i.e. the α-weighted mean
    of itself (weight 1) and its neighbours, renormalised. Apply it once to
    the catalogue before indexing; queries are then searched (and expanded)
    against the augmented catalogue.

    Args:
      database: `(N, D)` L2-normalised catalogue embeddings.
      k: neighbours per item, excluding the item itself, clipped to N - 1;
        0 turns the augmentation off.
      alpha: weight exponent, >= 0.

    Returns:
      `(N, D)` float32 L2-normalised augmented catalogue, rows in the same
      order.

    Raises:
      ValueError: if `database` is not 2-D, `k < 0` or alpha is negative.
    """
    database = _check_matrix("database", database).astype(
        np.float32, copy=False
    )
    k = min(_check_k(k, minimum=0), max(database.shape[0] - 1, 0))
    alpha = _check_alpha(alpha)
    if k == 0:
        return _normalise(database)
    ranked, scores = rank_exact(database, database, k + 1)  # (N, k + 1)
    # Drop each row's own index; a duplicate vector with a lower index may
    # outrank it, so it is not always in column 0 (nor, then, present at all).
    is_self = ranked == np.arange(database.shape[0])[:, None]  # (N, k + 1)
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    neighbours = ranked[keep].reshape(-1, k)  # (N, k)
    neighbour_scores = scores[keep].reshape(-1, k)  # (N, k)
    return _expand(database, neighbours, neighbour_scores, database, alpha)


def _format_cell(value, float_format: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format(float(value), float_format)
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(
        value, (bool, np.bool_)
    )


def format_table(
    rows: list[dict],
    columns: list[str],
    markdown: bool = False,
    float_format: str = ".4f",
) -> str:
    """Formats rows of metrics as an aligned plain-text or Markdown table.

    Numeric columns (every present value a number) are right-aligned, others
    left-aligned; a key missing from a row, or None, shows as "-".

    Args:
      rows: one dict per table row, e.g. `evaluate_rankings` results with a
        name added.
      columns: keys to show, in order; also the header.
      markdown: a GitHub Markdown table (for RESULTS.md) instead of plain
        text (for the CLI and benchmarks).
      float_format: format spec for non-integer numbers.

    Returns:
      The table, lines joined by "\\n", without a trailing newline.

    Raises:
      ValueError: if `columns` is empty.
    """
    if not columns:
        raise ValueError("format_table needs at least one column name.")
    numeric = [
        all(_is_number(row[c]) for row in rows if row.get(c) is not None)
        and any(row.get(c) is not None for row in rows)
        for c in columns
    ]
    header = [str(c) for c in columns]
    body = [
        [_format_cell(row.get(c), float_format) for c in columns]
        for row in rows
    ]
    if markdown:
        # A literal "|" would end the cell early.
        header = [cell.replace("|", "\\|") for cell in header]
        body = [[cell.replace("|", "\\|") for cell in line] for line in body]
    widths = [
        max([len(header[i])] + [len(line[i]) for line in body])
        for i in range(len(columns))
    ]
    if markdown:
        widths = [max(width, 3) for width in widths]

    def justify(cells: list[str]) -> list[str]:
        return [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric)
        ]

    if markdown:
        rule = [
            "-" * (width - 1) + ":" if right else "-" * width
            for width, right in zip(widths, numeric)
        ]
        lines = [justify(header), rule] + [justify(line) for line in body]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    rule = ["-" * width for width in widths]
    lines = [justify(header), rule] + [justify(line) for line in body]
    return "\n".join("  ".join(line).rstrip() for line in lines)
