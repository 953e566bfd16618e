r"""What each choice of the adaptation recipe gives, on GroceryStore val and dev2.

  python -m bench.adaptation_ablation [--bench_dir=out/bench_grocery] \
      [--models=efficientnet_lite0_224_gap,ensemble_imagenet_gap_224]

Reads the plain (unadapted) exports that `python -m bench.grocery` wrote
under <bench_dir>/exported/<model>_plain/1 and its CSVs (and says it is
skipped when they are absent), embeds the catalogue (`serving_default`), the
val and dev2 photos and the unlabelled pool (`query_multiscale`, and single
view for one row) once, caching them in <bench_dir>/ablation/<model>.npz,
then runs `self_training.self_train` with each variant of the recipe and
scores exact search with the learned projection applied to both sides, as
the adapted export serves it. No pool label is read.

Writes bench/results/adaptation_ablation.json: one row per (model, variant),
val and dev2 MAP@7 and the self-training's seconds. Figures:
bench/RESULTS.md ("Export").
"""

import dataclasses
import os

from absl import flags

from beau_tf.adaptation import self_training
from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets import grocery
from beau_tf.serving import contract
from bench import harness
from bench import scoring

_BENCH_DIR = flags.DEFINE_string(
    "bench_dir", "out/bench_grocery", "python -m bench.grocery's --out_dir."
)
_MODELS = flags.DEFINE_list(
    "models",
    ["efficientnet_lite0_224_gap", "ensemble_imagenet_gap_224"],
    "Plain exports of python -m bench.grocery to adapt.",
)
_VARIANTS = flags.DEFINE_list(
    "variants",
    [],
    "Numbers of the variants to run, 1 for the first row after "
    "'unadapted' (default: all).",
)
_DEFAULT = self_training.SelfTrainingConfig()
_HARD = dict(assignment="hard", catalogue_weight=1.0, rounds=2, ridge=30.0)


def _smoke_bench_dir(work_dir: str) -> str:
    """What bench.grocery leaves for one model, on a synthetic catalogue
    shaped like GroceryStore: its CSVs and a plain Lite0 export at 64 px."""
    dataset = harness.write_grocery_like(os.path.join(work_dir, "grocery"))
    bench_dir = os.path.join(work_dir, "bench_grocery")
    grocery.convert_grocery_store(dataset, os.path.join(bench_dir, "csv"))
    harness.export_untrained(
        os.path.join(bench_dir, "exported"),
        "efficientnet_lite0_64_gap_plain",
        image_size=64,
    )
    return bench_dir


# Each variant's self-training costs seconds of 1280-d eigendecompositions
# per round: the smoke run learns the recipe's one-round variant only.
SMOKE = {
    "bench_dir": _smoke_bench_dir,
    "models": ["efficientnet_lite0_64_gap"],
    "variants": ["4"],
}


def variants(ensemble: bool) -> list[tuple[str, dict, str]]:
    """(label, SelfTrainingConfig changes from the default, pool view)."""
    base = dict(pca_dim=512, ridge=1.0) if ensemble else {}
    rows = [
        (
            "hard nearest-product labels, catalogue weight 1, 2 rounds, ridge 30",
            _HARD,
            "multi",
        ),
        (
            "Sinkhorn labels, catalogue weight 1, 3 rounds, ridge 30",
            dict(catalogue_weight=1.0, rounds=3, ridge=30.0),
            "multi",
        ),
        (
            "Sinkhorn, catalogue weight 5, 3 rounds, ridge 30",
            dict(rounds=3, ridge=30.0),
            "multi",
        ),
        ("recipe, 1 round", dict(base, rounds=1), "multi"),
        ("recipe, 3 rounds", dict(base, rounds=3), "multi"),
        ("recipe (5 rounds)", base, "multi"),
        ("recipe, 40 dimensions", dict(base, dim=40), "multi"),
        ("recipe, 60 dimensions", dict(base, dim=60), "multi"),
        ("recipe, learned from single-view photos", base, "single"),
        (
            "recipe, catalogue weight 1",
            dict(base, catalogue_weight=1.0),
            "multi",
        ),
        ("recipe, temperature 0.1", dict(base, temperature=0.1), "multi"),
    ]
    if ensemble:
        rows.append(("recipe without PCA, ridge 3", dict(ridge=3.0), "multi"))
    return rows


def embed_model(model_dir: str, csvs: dict) -> dict:
    """Catalogue, splits and the unlabelled pool, embedded by the export."""
    values = scoring.embed_catalogue_and_queries(model_dir, csvs)
    pool = catalog_lib.list_photos(csvs["photos_unlabelled"])
    for view, signature in (
        ("multi", contract.MULTISCALE_SIGNATURE_NAME),
        ("single", contract.SIGNATURE_NAME),
    ):
        values[f"pool_{view}"] = scoring.embed_paths(model_dir, pool, signature)
    return values


def model_rows(model: str, values: dict) -> list[dict]:
    """The unadapted row, then one row per variant of the recipe."""
    rows = [
        {
            "model": model,
            "variant": "unadapted",
            **scoring.score(values),
            "seconds": 0.0,
        }
    ]
    chosen = variants("ensemble" in model)
    if _VARIANTS.value:
        chosen = [chosen[int(number) - 1] for number in _VARIANTS.value]
    for label, changes, view in chosen:
        config = dataclasses.replace(_DEFAULT, **changes)
        (projection, _), seconds = harness.timed(
            self_training.self_train,
            values["catalogue"],
            values[f"pool_{view}"],
            config,
        )
        rows.append(
            {
                "model": model,
                "variant": label,
                **scoring.score(values, projection),
                "seconds": seconds,
            }
        )
        val, dev2 = rows[-1]["val MAP@7"], rows[-1]["dev2 MAP@7"]
        print(
            f"{model} | {label} | {val:.3f} | {dev2:.3f} | {seconds:.1f} s",
            flush=True,
        )
    return rows


def main(argv):
    del argv
    bench_dir = _BENCH_DIR.value
    csvs = scoring.csvs_in(os.path.join(bench_dir, "csv"))
    model_dirs = {
        model: os.path.join(bench_dir, "exported", f"{model}_plain", "1")
        for model in _MODELS.value
    }
    missing = [d for d in model_dirs.values() if not os.path.isdir(d)]
    if missing or not os.path.isfile(csvs["catalog"]):
        harness.skip(
            f"no plain export or CSVs of python -m bench.grocery in "
            f"{bench_dir} ({', '.join(missing) or csvs['catalog']})"
        )
        return
    rows = []
    for model, model_dir in model_dirs.items():
        values = scoring.cached_npz(
            os.path.join(bench_dir, "ablation", f"{model}.npz"),
            lambda: embed_model(model_dir, csvs),
        )
        rows += model_rows(model, values)
    harness.print_table(rows)
    harness.write_results(rows)


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
