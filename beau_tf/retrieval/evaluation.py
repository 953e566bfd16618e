"""Scoring a catalogue index on query photos with known products.

`evaluate` ranks the catalogue for each query by exact search and by ScaNN
(with the query-time options asked) and scores both with
`beau_tf.retrieval.metrics`; `table_rows` flattens its per-group results for
`metrics.format_table`.
"""

import csv

import numpy as np

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import metrics


def read_groups(path: str) -> dict[str, str]:
    """item_id -> group from a CSV with columns item_id and group."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not {"item_id", "group"} <= set(rows[0]):
        raise ValueError(f"{path}: a CSV with columns item_id,group expected.")
    return {row["item_id"]: row["group"] for row in rows}


def check_known_ids(
    true_ids: list[str], item_ids: list[str], source: str, allow: bool
) -> int:
    """Raises unless every query's product is in the index (or `allow`).

    A query whose product the catalogue lacks can never be found, so
    counting it as a miss would silently lower every metric; a query list
    from another catalogue would score all zeros.

    Args:
      true_ids: each query's product id.
      item_ids: the index's ids.
      source: the query list, for the message.
      allow: count unknown ids as misses instead of raising.

    Returns:
      The number of queries whose product is not in the index.

    Raises:
      ValueError: some products are unknown and `allow` is False.
    """
    known = set(item_ids)
    unknown = [item_id for item_id in true_ids if item_id not in known]
    if unknown and not allow:
        first = sorted(set(unknown))[:5]
        raise ValueError(
            f"{source}: {len(unknown)} of {len(true_ids)} queries name "
            f"products the index does not hold (e.g. {', '.join(first)}); "
            "is it the catalogue's query list? Pass --allow_unknown_ids to "
            "score them as misses."
        )
    return len(unknown)


def evaluate(
    bundle: index_dir_lib.IndexBundle,
    queries: np.ndarray,
    true_ids: list[str],
    groups: list[str] | None,
    qe_k: int = 0,
    qe_alpha: float = 3.0,
    dba_k: int = 0,
    k: int = 7,
    missed_ids: list[str] = (),
    missed_groups: list[str] | None = None,
) -> list[dict]:
    """Metrics of exact search and ScaNN, with the query-time options asked.

    Args:
        bundle: the index.
        queries: (Q, D) embeddings of the queries that could be used.
        true_ids: their products.
        groups: their groups, or None.
        qe_k, qe_alpha, dba_k: query expansion and database-side
            augmentation (0: off).
        k: the cut-off.
        missed_ids: the products of queries that could not be used (not a
            decodable image, say): each is scored as a miss, with an empty
            ranking, so a broken query list cannot score well.
        missed_groups: their groups, when `groups` is given.

    Returns:
        One dict per method ("exact", "scann", and "+dba", "+qe" variants of
        exact search when asked): the `metrics.evaluate_rankings` keys
        ("num_queries" counts the missed ones), "unusable_queries", and
        "scann_recall@k_vs_exact" on the ScaNN row.
    """
    missed_ids = list(missed_ids)
    relevant = [{item_id} for item_id in [*true_ids, *missed_ids]]
    if groups is not None:
        groups = [*groups, *(missed_groups or ["other"] * len(missed_ids))]
    item_ids = bundle.index.item_ids
    exact_indices, _ = metrics.rank_exact(queries, bundle.embeddings, k)
    rows = []

    def add(method: str, indices: np.ndarray, **extra):
        ranked = [[item_ids[i] for i in row] for row in indices]
        ranked += [[] for _ in missed_ids]
        scores = metrics.evaluate_rankings(ranked, relevant, groups, k=k)
        rows.append(
            {
                "method": method,
                **scores,
                "unusable_queries": len(missed_ids),
                **extra,
            }
        )

    add("exact", exact_indices)
    # Fewer items than k: ScaNN and the recall below use what there is.
    scann_ids, _ = bundle.index.search(queries, min(k, len(item_ids)))
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    scann_indices = np.array([[position[i] for i in row] for row in scann_ids])
    add(
        "scann",
        scann_indices,
        **{
            f"scann_recall@{k}_vs_exact": metrics.recall_against_exact(
                scann_indices, exact_indices, scann_indices.shape[1]
            )
        },
    )
    database = bundle.embeddings
    if dba_k:
        database = metrics.database_side_augmentation(database, k=dba_k)
        add("exact+dba", metrics.rank_exact(queries, database, k)[0])
    if qe_k:
        expanded = metrics.alpha_query_expansion(
            queries, database, k=qe_k, alpha=qe_alpha
        )
        name = "exact+dba+qe" if dba_k else "exact+qe"
        add(name, metrics.rank_exact(expanded, database, k)[0])
    return rows


def table_rows(rows: list[dict]) -> list[dict]:
    """`evaluate`'s rows with each group's metrics as an indented row below."""
    flat = []
    for row in rows:
        flat.append(row)
        for group, group_metrics in row.get("by_group", {}).items():
            flat.append(
                {**group_metrics, "method": f"  {row['method']} [{group}]"}
            )
    return flat
