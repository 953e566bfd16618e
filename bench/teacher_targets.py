r"""How often a distillation run's teacher targets name the photo's product.

  python -m bench.teacher_targets --workdir=RUN \
      [--bench_dir=out/bench_grocery] [--variant=NAME]

A distillation run (`configs/distill.flags`) keeps its teacher's soft
targets for the shop's unlabelled photos in <workdir>/photo_targets.npz;
the student learns what they say. This bench reads those photos' labels
(<bench_dir>/csv/queries_train.csv, which python -m bench.grocery writes)
and says, per group of <bench_dir>/csv/coarse.csv:

  top target right      the share of photos whose largest target is their
                        product;
  top 5 hold it         the share whose five largest hold it;
  wrong, same kind      the share of the wrong ones whose largest target is
                        another product of the photo's own coarse class
                        (another apple for an apple);
  mean top target       how sure the teacher is, on the right and on the
                        wrong photos;
  most frequent         the commonest confusions (photo's product ->
                        product of the largest target).

It reads the labels of the photos that training reads, so it is a
diagnosis of what the students learn from, and never a way to choose a
teacher, a temperature or a recipe: that would train on those labels by
another road. Targets made per view (`--teacher_per_view`) are read as
the mean of their views.

Writes bench/results/teacher_targets[-<variant>].json. Figures:
bench/RESULTS.md ("The paper's mask on real photos").
"""

import json
import os

import numpy as np
from absl import flags

from beau_tf.data import catalog
from beau_tf.datasets import grocery
from beau_tf.training import photo_targets
from bench import harness
from bench import scoring

_BENCH_DIR = flags.DEFINE_string(
    "bench_dir",
    "out/bench_grocery",
    "python -m bench.grocery's --out_dir: its csv/ folder holds the "
    "catalogue, the photos' labels and the coarse classes.",
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "A distillation run's workdir, holding photo_targets.npz.",
)
_VARIANT = flags.DEFINE_string(
    "variant",
    None,
    "Names the results file teacher_targets-<variant>.json.",
)

CONFUSIONS_SHOWN = 4
TOP_K = 5

COLUMNS = (
    "group",
    "photos",
    "top target right",
    f"top {TOP_K} hold it",
    "wrong, same kind",
    "mean top target: right",
    "mean top target: wrong",
    "most frequent",
)


def target_rows(
    targets: np.ndarray,
    true_ids: np.ndarray,
    item_ids: np.ndarray,
    coarse: dict,
) -> list[dict]:
    """One row per group (all photos first) of the `COLUMNS` above.

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
    same_kind = scoring.same_coarse_class(first, true_ids, coarse)
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
                "wrong, same kind": (
                    float(same_kind[wrong].mean()) if wrong.any() else 0.0
                ),
                "mean top target: right": _mean_or_nan(
                    top_target[chosen & right]
                ),
                "mean top target: wrong": _mean_or_nan(top_target[wrong]),
                "most frequent": scoring.most_frequent_confusions(
                    first[wrong], true_ids[wrong], CONFUSIONS_SHOWN
                ),
            }
        )
    return rows


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def read_run(workdir: str, catalogue_csv: str) -> tuple[np.ndarray, list, str]:
    """`(targets (N, K), photo paths, teacher)` of a run, its columns
    checked against the catalogue (its `K` products, and the one the run's
    train_config.json names, where it names one).

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
    products = len(catalog.list_catalog(catalogue_csv))
    with np.load(path) as kept:
        targets = kept["targets"]
        paths = [str(p) for p in kept["paths"]]
        teacher = str(kept["teacher"]) if "teacher" in kept else ""
    if targets.ndim == 3:
        targets = targets.mean(axis=1)
    if targets.shape[-1] != products:
        raise ValueError(
            f"{path} holds targets over {targets.shape[-1]} products but "
            f"{catalogue_csv} lists {products}: the run was trained on "
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
    return targets, paths, teacher


def _smoke_bench_dir(work_dir: str) -> str:
    """bench.grocery's CSVs of a small synthetic GroceryStore (24 products),
    and beside them a run whose targets an untrained Lite0 at 64 px made
    (`<work_dir>/run`, the smoke run's --workdir)."""
    dataset = harness.write_grocery_like(
        os.path.join(work_dir, "grocery"), num_products=24
    )
    bench_dir = os.path.join(work_dir, "bench_grocery")
    written = grocery.convert_grocery_store(
        dataset, os.path.join(bench_dir, "csv")
    )
    teacher = harness.export_untrained(
        os.path.join(work_dir, "exported"), "teacher", image_size=64
    )
    photo_targets.load_or_make(
        os.path.join(work_dir, "run"),
        teacher,
        [item.path for item in catalog.list_catalog(written["catalog"])],
        catalog.list_photos(written["photos_unlabelled"]),
        temperature=0.03,
    )
    return bench_dir


SMOKE = {
    "bench_dir": _smoke_bench_dir,
    "workdir": lambda work_dir: os.path.join(work_dir, "run"),
}


def main(argv):
    del argv
    if not _WORKDIR.value:
        raise ValueError("--workdir is required: a distillation run.")
    csv_dir = os.path.join(_BENCH_DIR.value, "csv")
    labels_csv = os.path.join(csv_dir, "queries_train.csv")
    coarse_csv = os.path.join(csv_dir, "coarse.csv")
    if not os.path.isfile(labels_csv) or not os.path.isfile(coarse_csv):
        harness.skip(
            f"no CSVs of python -m bench.grocery in {csv_dir} "
            "(queries_train.csv and coarse.csv)"
        )
        return
    catalogue_csv = os.path.join(csv_dir, "catalog.csv")
    targets, paths, teacher = read_run(_WORKDIR.value, catalogue_csv)
    labels = {q.path: q.item_id for q in catalog.read_queries(labels_csv)}
    unlabelled = [p for p in paths if p not in labels]
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} of the run's {len(paths)} photos are not in "
            f"{labels_csv} (first: {unlabelled[0]}): the run read other "
            "photos than this --bench_dir's."
        )
    item_ids = np.array(
        [item.item_id for item in catalog.list_catalog(catalogue_csv)]
    )
    rows = target_rows(
        targets,
        np.array([labels[p] for p in paths]),
        item_ids,
        scoring.read_coarse(coarse_csv),
    )
    print(f"Targets of {teacher or 'an unnamed teacher'}:")
    harness.print_table(rows, COLUMNS)
    harness.write_results(rows, variant=_VARIANT.value, teacher=teacher)


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
