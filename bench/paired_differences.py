r"""How sure a difference between exports is, and where their errors go.

  python -m bench.paired_differences [--bench_dir=out/bench_grocery] \
      --exports=REFERENCE,OTHER[,OTHER...] [--runs_per_recipe=N]

Each export is the name of one that `python -m bench.grocery` wrote (under
<bench_dir>/exported/<name>/1) or a SavedModel folder; the first is the
reference. Every export embeds the catalogue (`serving_default`) and the
`val` and dev2 photos (`query_multiscale`), cached in
<bench_dir>/paired/<fingerprint>.npz, and is scored by exact search.

Two tables, both per split (`val`, dev2) and per group (all photos, then
each group of <bench_dir>/csv/coarse.csv):

- differences: each export's MAP@7, its difference from the reference, and
  the paired bootstrap interval of that difference over the photos
  (`metrics.paired_bootstrap_interval`), with how many photos rank their
  product higher or lower than under the reference. An interval holding 0
  could be the photos' luck; one below a target rules the target out.
- errors: each export's top-1 errors, the share of them that name another
  product of the photo's own coarse class (another apple for an apple), the
  share that repeat the reference's error (the same wrong product first:
  with a distillation run's teacher as the reference, what the student
  inherited), and its most frequent confusions (photo's product -> product
  ranked first).

With --runs_per_recipe=N, --exports lists N runs of each recipe (its
seeds) one after another, the reference recipe's first: a recipe's
per-photo AP@7 is the mean of its runs', so its MAP@7 is their mean and
its difference from the reference is the seed-averaged paired difference.
Its interval still resamples photos only: seeds are too few to resample.
The errors table keeps each run.

No label is read except to score. Writes
bench/results/paired_differences[-<variant>].json.
"""

import os

import numpy as np
from absl import flags

from beau_tf.datasets import grocery
from beau_tf.serving import contract
from bench import errors as errors_lib
from bench import harness
from bench import scoring

_BENCH_DIR = flags.DEFINE_string(
    "bench_dir", "out/bench_grocery", "python -m bench.grocery's --out_dir."
)
_EXPORTS = flags.DEFINE_list(
    "exports",
    [],
    "Exports to compare, the reference first: names of bench.grocery's "
    "exports or SavedModel folders.",
)
_CONFIDENCE = flags.DEFINE_float("confidence", 0.95, "The intervals' coverage.")
_RESAMPLES = flags.DEFINE_integer(
    "resamples", 10_000, "Bootstrap resamples per interval."
)
_SEED = flags.DEFINE_integer("seed", 0, "The resampling's seed.")
_RUNS_PER_RECIPE = flags.DEFINE_integer(
    "runs_per_recipe",
    1,
    "How many consecutive --exports are runs of one recipe (its seeds); "
    "the differences compare recipes, each its runs' mean per-photo AP@7.",
    lower_bound=1,
)
_VARIANT = flags.DEFINE_string(
    "variant",
    None,
    "Names the results file paired_differences-<variant>.json, so that "
    "several comparisons keep their own.",
)


def _smoke_bench_dir(work_dir: str) -> str:
    """bench.grocery's CSVs of a small synthetic GroceryStore (24 products)
    and two plain untrained exports (Lite0 at 64 and at 48 px)."""
    dataset = harness.write_grocery_like(
        os.path.join(work_dir, "grocery"), num_products=24
    )
    bench_dir = os.path.join(work_dir, "bench_grocery")
    grocery.convert_grocery_store(dataset, os.path.join(bench_dir, "csv"))
    for size in (64, 48):
        harness.export_untrained(
            os.path.join(bench_dir, "exported"),
            f"efficientnet_lite0_{size}_gap_plain",
            image_size=size,
        )
    return bench_dir


SMOKE = {
    "bench_dir": _smoke_bench_dir,
    "exports": [
        "efficientnet_lite0_64_gap_plain",
        "efficientnet_lite0_48_gap_plain",
    ],
    "resamples": 200,
}


def model_dir(bench_dir: str, export: str) -> str:
    """A bench.grocery export's version folder, or `export` itself when it
    is a folder path."""
    if os.sep in export:
        return export
    return os.path.join(bench_dir, "exported", export, "1")


def label(export: str) -> str:
    """How the tables name an export: its name, or a folder's model name
    (`<base>/<model>/<version>` gives `<model>`)."""
    if os.sep not in export:
        return export
    folder = os.path.normpath(export)
    if os.path.basename(folder).isdigit():
        folder = os.path.dirname(folder)
    return os.path.basename(folder)


def embed(bench_dir: str, folder: str, csvs: dict) -> dict:
    """The export's catalogue and split embeddings, cached by its model
    fingerprint (an export too old to have one is embedded every time)."""
    fingerprint = contract.model_identity(folder).get("model_fingerprint")
    if not fingerprint:
        return scoring.embed_catalogue_and_queries(folder, csvs)
    return scoring.cached_npz(
        os.path.join(bench_dir, "paired", f"{fingerprint[:16]}.npz"),
        lambda: scoring.embed_catalogue_and_queries(folder, csvs),
    )


def main(argv):
    del argv
    bench_dir, exports = _BENCH_DIR.value, _EXPORTS.value
    csvs = scoring.csvs_in(os.path.join(bench_dir, "csv"))
    coarse_csv = os.path.join(bench_dir, "csv", "coarse.csv")
    folders = {label(name): model_dir(bench_dir, name) for name in exports}
    if len(exports) < 2:
        raise ValueError(
            f"--exports names {len(exports)} export(s); expected the "
            "reference and at least one other."
        )
    runs = _RUNS_PER_RECIPE.value
    if len(exports) % runs or len(exports) < 2 * runs:
        raise ValueError(
            f"--exports names {len(exports)} export(s); with "
            f"--runs_per_recipe={runs} expected {runs} runs of the "
            "reference recipe and of at least one other, in turn."
        )
    if len(folders) < len(exports):
        raise ValueError(
            f"--exports {exports} name two exports alike; give each its "
            "own model name."
        )
    missing = [f for f in folders.values() if not os.path.isdir(f)]
    if missing or not os.path.isfile(coarse_csv):
        harness.skip(
            f"no export or CSVs of python -m bench.grocery in {bench_dir} "
            f"({', '.join(missing) or coarse_csv})"
        )
        return
    coarse = scoring.read_coarse(coarse_csv)
    interval = dict(
        confidence=_CONFIDENCE.value,
        resamples=_RESAMPLES.value,
        seed=_SEED.value,
    )
    embedded = {name: embed(bench_dir, f, csvs) for name, f in folders.items()}
    differences, errors = [], []
    names = list(folders)
    for split in scoring.SPLITS:
        true_ids = embedded[names[0]][f"{split}_ids"]
        for name in names[1:]:
            if not np.array_equal(embedded[name][f"{split}_ids"], true_ids):
                raise ValueError(f"{name} embedded other {split} photos.")
        members = scoring.photo_groups(true_ids, coarse)
        ranked = {
            name: scoring.ranked_ids(
                embedded[name][split],
                embedded[name]["catalogue"],
                embedded[name]["catalogue_ids"],
            )
            for name in names
        }
        aps = {
            name: scoring.average_precisions(ids, true_ids)
            for name, ids in ranked.items()
        }
        differences += scoring.difference_rows(
            scoring.recipe_aps(aps, runs), split, members, interval
        )
        errors += errors_lib.error_rows(
            ranked, true_ids, split, members, coarse
        )
    harness.print_table(differences, scoring.DIFFERENCE_COLUMNS)
    harness.print_table(errors, errors_lib.ERROR_COLUMNS)
    harness.write_results(
        [dict(row, table="differences") for row in differences]
        + [dict(row, table="errors") for row in errors],
        variant=_VARIANT.value,
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
