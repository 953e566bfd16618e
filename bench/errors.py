"""Where errors go: of retrieval (bench.paired_differences) and of a
distillation run's teacher targets (bench.teacher_targets), per photo
group. No flags, so tests import it beside any command.

`coarse` is `scoring.read_coarse`'s item_id -> (coarse class, group).
"""

import collections
import json
import os
from typing import NamedTuple

import numpy as np

from beau_tf.data import catalog
from beau_tf.training import photo_targets
from bench import scoring

# How many confusions a row names: of retrieval, of teacher targets.
CONFUSIONS_SHOWN = 3
TARGET_CONFUSIONS_SHOWN = 4
TOP_K = 5  # teacher targets: "top 5 hold it"

ERROR_COLUMNS = (
    "split",
    "group",
    "export",
    "photos",
    "top-1 errors",
    "share within the coarse class",
    "share the reference's error",
    "most frequent",
)
TARGET_COLUMNS = (
    "group",
    "photos",
    "top target right",
    f"top {TOP_K} hold it",
    "wrong, same kind",
    "mean top target: right",
    "mean top target: wrong",
    "most frequent",
)


def same_coarse_class(
    predicted: np.ndarray, true_ids: np.ndarray, coarse: dict
) -> np.ndarray:
    """(N,) bool: whether each predicted product is of its photo's own
    coarse class (another apple for an apple, or the apple itself)."""
    return np.array(
        [coarse[p][0] == coarse[t][0] for p, t in zip(predicted, true_ids)],
        dtype=bool,
    )


def most_frequent_confusions(
    predicted: np.ndarray, true_ids: np.ndarray, shown: int
) -> str:
    """The `shown` commonest `photo's product -> predicted product` pairs
    among the photos given, with their counts ("a -> b ×3; ...")."""
    confusions = collections.Counter(
        f"{t} -> {p}" for p, t in zip(predicted, true_ids)
    )
    return "; ".join(
        f"{pair} ×{count}" for pair, count in confusions.most_common(shown)
    )


def error_rows(
    ranked: dict[str, np.ndarray],
    true_ids: np.ndarray,
    split: str,
    members: dict[str, np.ndarray],
    coarse: dict,
) -> list[dict]:
    """One row per (export, group) of `ERROR_COLUMNS`: top-1 errors, the
    share of them that name a product of the photo's own coarse class, the
    share where the reference (the first of `ranked`) ranks the same wrong
    product first (absent from the reference's own rows), and the
    `CONFUSIONS_SHOWN` most frequent (product -> product ranked first)."""
    reference_first = next(iter(ranked.values()))[:, 0]
    rows = []
    for index, (name, ids) in enumerate(ranked.items()):
        wrong = ids[:, 0] != true_ids
        same_kind = same_coarse_class(ids[:, 0], true_ids, coarse)
        shared = wrong & (ids[:, 0] == reference_first)
        for group, chosen in members.items():
            errors = int((wrong & chosen).sum())
            row = {
                "split": split,
                "group": group,
                "export": name,
                "photos": int(chosen.sum()),
                "top-1 errors": errors,
                "share within the coarse class": _share(
                    wrong & chosen & same_kind, errors
                ),
                "most frequent": most_frequent_confusions(
                    ids[wrong & chosen, 0],
                    true_ids[wrong & chosen],
                    CONFUSIONS_SHOWN,
                ),
            }
            if index:
                row["share the reference's error"] = _share(
                    shared & chosen, errors
                )
            rows.append(row)
    return rows


def _share(among: np.ndarray, errors: int) -> float:
    return float(among.sum() / errors) if errors else 0.0


def target_rows(
    targets: np.ndarray,
    true_ids: np.ndarray,
    item_ids: np.ndarray,
    coarse: dict,
) -> list[dict]:
    """One row per group (all photos first) of `TARGET_COLUMNS`.

    Args:
      targets: `(N, K)` rows summing to 1, over the catalogue's K products.
      true_ids: `(N,)` the photos' products.
      item_ids: `(K,)` the product of each target column.
      coarse: item_id -> (coarse class, group), `scoring.read_coarse`.
    """
    order = np.argsort(-targets, axis=1, kind="stable")
    first = item_ids[order[:, 0]]
    right = first == true_ids
    in_top = (item_ids[order[:, :TOP_K]] == true_ids[:, None]).any(axis=1)
    same_kind = same_coarse_class(first, true_ids, coarse)
    top_target = targets.max(axis=1)
    rows = []
    for group, chosen in scoring.photo_groups(true_ids, coarse).items():
        wrong = chosen & ~right
        rows.append(
            {
                "group": group,
                "photos": int(chosen.sum()),
                "top target right": float(right[chosen].mean()),
                f"top {TOP_K} hold it": float(in_top[chosen].mean()),
                "wrong, same kind": _share(wrong & same_kind, int(wrong.sum())),
                "mean top target: right": _mean_or_nan(
                    top_target[chosen & right]
                ),
                "mean top target: wrong": _mean_or_nan(top_target[wrong]),
                "most frequent": most_frequent_confusions(
                    first[wrong], true_ids[wrong], TARGET_CONFUSIONS_SHOWN
                ),
            }
        )
    return rows


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


class RunTargets(NamedTuple):
    """A distillation run's teacher targets, read by `read_targets`.

    Attributes:
      targets: `(N, K)` rows summing to 1 (per-view targets: their mean).
      paths: the N photos, in row order.
      item_ids: `(K,)` the catalogue's product of each column.
      teacher: the teacher export that made them ("" when not recorded).
    """

    targets: np.ndarray
    paths: list[str]
    item_ids: np.ndarray
    teacher: str


def read_targets(workdir: str, catalogue_csv: str) -> RunTargets:
    """A run's targets, their columns checked against the catalogue (its
    `K` products, and the one the run's train_config.json names, where it
    names one).

    Raises:
      FileNotFoundError: the run holds no targets.
      ValueError: they were made over another catalogue.
    """
    path = os.path.join(workdir, photo_targets.TARGETS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} does not exist: --workdir must be a distillation run "
            "(configs/distill.flags) that has made its targets."
        )
    item_ids = np.array(
        [item.item_id for item in catalog.list_catalog(catalogue_csv)]
    )
    with np.load(path) as kept:
        targets = kept["targets"]
        paths = [str(p) for p in kept["paths"]]
        teacher = str(kept["teacher"]) if "teacher" in kept else ""
    if targets.ndim == 3:
        targets = targets.mean(axis=1)
    if targets.shape[-1] != len(item_ids):
        raise ValueError(
            f"{path} holds targets over {targets.shape[-1]} products but "
            f"{catalogue_csv} lists {len(item_ids)}: the run was trained on "
            "another catalogue."
        )
    config_path = os.path.join(workdir, "train_config.json")
    if os.path.isfile(config_path):
        with open(config_path) as stream:
            trained_on = json.load(stream).get("catalog")
        if trained_on and os.path.realpath(trained_on) != os.path.realpath(
            catalogue_csv
        ):
            raise ValueError(
                f"{config_path} names the catalogue {trained_on}, not "
                f"{catalogue_csv}: give the --bench_dir the run trained on."
            )
    return RunTargets(targets, paths, item_ids, teacher)
