"""Exact-search MAP@7 of embeddings on GroceryStore's development sets, for
the benches that score many projections of one export's embeddings
(bench.adaptation_ablation, bench.augmentation_lda), and the paired
differences between embeddings, per photo group (bench.paired_differences,
bench.mask_pooling). No flags, so tests import it beside any command.

The embeddings come from an export's signatures, as the index and the
queries would (`serving_default` for the catalogue, `query_multiscale` for
the photos); a projection is applied to both sides, as an adapted export
serves it. `csvs` is what `beau_tf.datasets.grocery.convert_grocery_store`
returns (or the same names under its output folder).
"""

import csv
import os

import numpy as np

from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import metrics
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib

K = 7
SPLITS = ("val", "dev2")
ALL = "all"
DIFFERENCE_COLUMNS = (
    "split",
    "group",
    "export",
    "photos",
    "MAP@7",
    "difference",
    "interval low",
    "interval high",
    "photos up",
    "photos down",
)
CSV_NAMES = ("catalog", "queries_val", "queries_dev2", "photos_unlabelled")


def csvs_in(folder: str) -> dict[str, str]:
    """The converter's CSVs in `folder`, by name."""
    return {name: os.path.join(folder, f"{name}.csv") for name in CSV_NAMES}


def embed_paths(model_dir: str, paths: list[str], signature: str):
    """(N, D) embeddings of `paths` by one signature of an export, in order.

    Raises:
      ValueError: when an image cannot be embedded (the scores need all).
    """
    return embed_every_path(
        embedding_lib.load_embed_fn(model_dir, signature),
        paths,
        f"Embedding ({signature})",
    )


def embed_every_path(
    embed_fn, paths: list[str], description: str, batch_size: int = 32
) -> np.ndarray:
    """(N, D) embeddings of `paths` by `embed_fn` (`embedding.embed_files`'),
    in order.

    Raises:
      ValueError: when an image cannot be embedded (the scores need all).
    """
    embeddings, kept = embedding_lib.embed_files(
        embed_fn, paths, batch_size=batch_size, description=description
    )
    if len(kept) != len(paths):
        raise ValueError(
            f"{len(paths) - len(kept)} of {len(paths)} images could not be "
            f"embedded ({description}); the benchmark needs them all."
        )
    return embeddings


def embed_catalogue_and_queries(model_dir: str, csvs: dict) -> dict:
    """The catalogue (`serving_default`) and each split's photos
    (`query_multiscale`) through an export (`embed_catalogue_and_splits`)."""
    return embed_catalogue_and_splits(
        embedding_lib.load_embed_fn(model_dir, contract.SIGNATURE_NAME),
        embedding_lib.load_embed_fn(
            model_dir, contract.MULTISCALE_SIGNATURE_NAME
        ),
        csvs,
    )


def embed_catalogue_and_splits(
    embed_catalogue_fn, embed_query_fn, csvs: dict, batch_size: int = 32
) -> dict:
    """The catalogue through `embed_catalogue_fn` and each split's photos
    through `embed_query_fn` (`embedding.embed_files`' embed functions: one
    view a shot, and the queries' views).

    Returns:
      `{"catalogue", "catalogue_labels", "catalogue_ids"}` and, per split,
      `{split}` (N, D) and `{split}_ids`.

    Raises:
      ValueError: when an image cannot be embedded (the scores need all).
    """
    items = catalog_lib.list_catalog(csvs["catalog"])
    result = {
        "catalogue": embed_every_path(
            embed_catalogue_fn,
            [i.path for i in items],
            "Embedding the catalogue",
            batch_size,
        ),
        "catalogue_labels": np.array([i.label for i in items]),
        "catalogue_ids": np.array([i.item_id for i in items]),
    }
    for split in SPLITS:
        queries = catalog_lib.read_queries(csvs[f"queries_{split}"])
        result[split] = embed_every_path(
            embed_query_fn,
            [q.path for q in queries],
            f"Embedding the {split} photos",
            batch_size,
        )
        result[f"{split}_ids"] = np.array([q.item_id for q in queries])
    return result


def ranked_ids(
    queries: np.ndarray, catalogue: np.ndarray, catalogue_ids: np.ndarray
) -> np.ndarray:
    """(Q, K) catalogue ids of exact search, best first."""
    indices, _ = metrics.rank_exact(
        queries.astype(np.float32), catalogue.astype(np.float32), K
    )
    return catalogue_ids[indices]


def average_precisions(ranked: np.ndarray, true_ids: np.ndarray) -> np.ndarray:
    """(Q,) AP@K of each photo (1 / rank of its product, 0 past K)."""
    return np.array(
        [
            metrics.average_precision_at_k(list(row), {true}, K, "hits")
            for row, true in zip(ranked, true_ids)
        ]
    )


def map_at_k(
    queries: np.ndarray,
    true_ids: np.ndarray,
    catalogue: np.ndarray,
    catalogue_ids: np.ndarray,
) -> float:
    """MAP@7 (`map@7_hits`) of exact search."""
    ranked = ranked_ids(queries, catalogue, catalogue_ids)
    return float(average_precisions(ranked, true_ids).mean())


def score(embedded: dict, projection=None) -> dict:
    """`{"<split> MAP@7"}`; `projection` applied to both sides when given."""
    project = projection or (lambda x: x)
    catalogue = project(embedded["catalogue"]).astype(np.float32)
    return {
        f"{split} MAP@7": map_at_k(
            project(embedded[split]).astype(np.float32),
            embedded[f"{split}_ids"],
            catalogue,
            embedded["catalogue_ids"],
        )
        for split in SPLITS
    }


def cached_npz(path: str, compute) -> dict:
    """`compute()` (a dict of arrays), kept in `path`."""
    if not os.path.exists(path):
        result = compute()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = path + ".tmp.npz"
        np.savez(temporary, **result)
        os.replace(temporary, path)
    with np.load(path) as stored:
        return dict(stored)


def recipe_aps(
    aps: dict[str, np.ndarray], runs_per_recipe: int
) -> dict[str, np.ndarray]:
    """Each recipe's per-photo AP@7, the mean of its runs': `aps` holds
    `runs_per_recipe` runs of each recipe in turn. A recipe is named by
    its runs' names joined with "+"."""
    names = list(aps)
    recipes = [
        names[start : start + runs_per_recipe]
        for start in range(0, len(names), runs_per_recipe)
    ]
    return {
        "+".join(runs): np.mean([aps[run] for run in runs], axis=0)
        for runs in recipes
    }


def read_coarse(path: str) -> dict[str, tuple[str, str]]:
    """item_id -> (coarse class, group) from the converter's coarse.csv."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not {"item_id", "coarse_class_name", "group"} <= set(
        rows[0]
    ):
        raise ValueError(
            f"{path}: a CSV with columns item_id,coarse_class_name,group "
            "expected (python -m beau_tf.convert_grocery writes it)."
        )
    return {r["item_id"]: (r["coarse_class_name"], r["group"]) for r in rows}


def photo_groups(true_ids: np.ndarray, coarse: dict) -> dict[str, np.ndarray]:
    """Group name -> (Q,) bool of its photos, all photos first."""
    groups = np.array([coarse[i][1] for i in true_ids])
    return {ALL: np.ones(len(true_ids), bool)} | {
        group: groups == group for group in sorted(set(groups))
    }


def difference_rows(
    aps: dict[str, np.ndarray],
    split: str,
    members: dict[str, np.ndarray],
    interval: dict,
    name_column: str = "export",
) -> list[dict]:
    """One row per (export or recipe, group): MAP@7 and the paired
    difference from the first, with its bootstrap interval (`interval`:
    the keyword arguments of `metrics.paired_bootstrap_interval`). The
    column `name_column` names what `aps` compares."""
    names = list(aps)
    reference = aps[names[0]]
    rows = []
    for name in names:
        for group, chosen in members.items():
            row = {
                "split": split,
                "group": group,
                name_column: name,
                "photos": int(chosen.sum()),
                "MAP@7": float(aps[name][chosen].mean()),
            }
            if name != names[0]:
                change = aps[name][chosen] - reference[chosen]
                low, high = metrics.paired_bootstrap_interval(
                    change, **interval
                )
                row |= {
                    "difference": float(change.mean()),
                    "interval low": low,
                    "interval high": high,
                    "photos up": int((change > 0).sum()),
                    "photos down": int((change < 0).sum()),
                }
            rows.append(row)
    return rows
