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

import os

import numpy as np
from absl import flags

from beau_tf.data import catalog
from beau_tf.datasets import grocery
from beau_tf.training import photo_targets
from bench import errors
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


# In this order: the bench folder's maker also makes the run beside it.
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
    run = errors.read_targets(_WORKDIR.value, catalogue_csv)
    labels = {q.path: q.item_id for q in catalog.read_queries(labels_csv)}
    unlabelled = [p for p in run.paths if p not in labels]
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} of the run's {len(run.paths)} photos are not in "
            f"{labels_csv} (first: {unlabelled[0]}): the run read other "
            "photos than this --bench_dir's."
        )
    rows = errors.target_rows(
        run.targets,
        np.array([labels[p] for p in run.paths]),
        run.item_ids,
        scoring.read_coarse(coarse_csv),
    )
    print(f"Targets of {run.teacher or 'an unnamed teacher'}:")
    harness.print_table(rows, errors.TARGET_COLUMNS)
    harness.write_results(rows, variant=_VARIANT.value, teacher=run.teacher)


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
