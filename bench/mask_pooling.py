r"""What the predicted mask adds when it pools a trained model's features.

  python -m bench.mask_pooling [--bench_dir=out/bench_grocery] \
      [--workdir=out/runs/distill_lite0] [--variant=NAME]

The paper's attention pooling weighs each cell of the stride-32 feature map
by the predicted mask. This bench keeps one model (--workdir's trained
extractor: its backbone, decoder and projection as trained) and changes
only how its features are pooled, on both sides of the search:

  the mask, as trained     the model's own embedding: the reference;
  no mask (GAP)            the mean of the same features;
  mask squared, mask^4     sharper: the cells the decoder is surest of
                           weigh more;
  square root of the mask  softer;
  mask at half its peak    the cells the decoder marks, weighed alike;
  1 - mask                 the background, softly;
  cells below half its peak  the cells the decoder does not mark: how much
                           of the product the features there still see.

Each pooling embeds the catalogue and the photos as an export serves them
(`saved_model.ServingModule`: catalogue shots by `serving_default`, photos
by `query_multiscale`, the default zooms), all from one backbone pass per
view, cached in <bench_dir>/mask_pooling/ by the model's fingerprint and
the poolings' names. Each is scored by exact search on `val` and dev2,
plain and adapted (the export's self-training recipe for one model, learned
for that pooling from <bench_dir>/csv/photos_unlabelled.csv; no label
read), per photo group, with the paired bootstrap interval of its
difference from the model's own pooling (`scoring.difference_rows`).

Without --workdir the model is an untrained ImageNet EfficientNet-Lite0
with attention pooling (its decoder untrained: the smoke run's model).

Writes bench/results/mask_pooling[-<variant>].json. Figures:
bench/RESULTS.md ("The paper's mask on real photos").
"""

import hashlib
import os

from absl import flags
import keras
import numpy as np

from beau_tf.adaptation import self_training
from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets import grocery
from beau_tf.models import extractor as extractor_lib
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import saved_model
from beau_tf.training import workdir as workdir_lib
from bench import harness
from bench import poolings
from bench import scoring

_BENCH_DIR = flags.DEFINE_string(
    "bench_dir", "out/bench_grocery", "python -m bench.grocery's --out_dir."
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "A finished training run with attention pooling (default: an untrained "
    "ImageNet EfficientNet-Lite0 with attention pooling).",
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 224, "Model side of the untrained default."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per model call.")
_RESAMPLES = flags.DEFINE_integer(
    "resamples", 10_000, "Bootstrap resamples per interval."
)
_ADAPT_ROUNDS = flags.DEFINE_integer(
    "adapt_rounds",
    self_training.SelfTrainingConfig().rounds,
    "Self-training rounds of each adaptation (the export's default).",
)
_VARIANT = flags.DEFINE_string(
    "variant",
    None,
    "Names the results file mask_pooling-<variant>.json, so that several "
    "models keep their own.",
)


def _smoke_bench_dir(work_dir: str) -> str:
    """bench.grocery's CSVs of a synthetic GroceryStore (81 products, so the
    adaptation keeps its 80 directions)."""
    dataset = harness.write_grocery_like(os.path.join(work_dir, "grocery"))
    bench_dir = os.path.join(work_dir, "bench_grocery")
    grocery.convert_grocery_store(dataset, os.path.join(bench_dir, "csv"))
    return bench_dir


# Each adaptation's eigendecompositions cost seconds: the smoke run adapts
# with one round.
SMOKE = {
    "bench_dir": _smoke_bench_dir,
    "image_size": 64,
    "resamples": 200,
    "adapt_rounds": 1,
}


def _extractor() -> keras.Model:
    if _WORKDIR.value:
        if not workdir_lib.source(_WORKDIR.value)["trained_mask_decoder"]:
            raise ValueError(
                f"{_WORKDIR.value} trained no mask decoder (GAP pooling and "
                "no mask loss); give a run with attention pooling."
            )
        return workdir_lib.load_extractors([_WORKDIR.value])[0][0]
    return extractor_lib.build_extractor(
        extractor_lib.ExtractorConfig(
            backbone="efficientnet_lite0",
            backbone_weights="imagenet",
            image_size=_IMAGE_SIZE.value,
            pooling="attention",
        )
    )


def _embed(function, paths: list[str], description: str) -> np.ndarray:
    """(N, D): `paths` through one of a module's signatures."""
    return scoring.embed_every_path(
        embedding_lib.as_embed_fn(function),
        paths,
        description,
        batch_size=_BATCH_SIZE.value,
    )


def embed_all(module: saved_model.ServingModule, csvs: dict) -> dict:
    """The catalogue (`serve`), each split's photos and the unlabelled pool
    (`serve_multiscale`) through `module`, as `scoring` names them."""
    result = scoring.embed_catalogue_and_splits(
        embedding_lib.as_embed_fn(module.serve),
        embedding_lib.as_embed_fn(module.serve_multiscale),
        csvs,
        batch_size=_BATCH_SIZE.value,
    )
    result["pool"] = _embed(
        module.serve_multiscale,
        catalog_lib.list_photos(csvs["photos_unlabelled"]),
        "unlabelled photos",
    )
    return result


def check_reference(
    extractor: keras.Model, embedded: dict, csvs: dict
) -> float:
    """The largest gap between the first pooling's catalogue embeddings and
    the extractor's own; RuntimeError above 1e-4 (the bench would score
    something other than the model)."""
    module = saved_model.ServingModule(extractor, contract.DEFAULT_QUERY_ZOOMS)
    paths = [i.path for i in catalog_lib.list_catalog(csvs["catalog"])]
    own = _embed(module.serve, paths, "catalogue, the model's pooling")
    gap = float(np.abs(poolings.split(embedded["catalogue"])[0] - own).max())
    if gap > 1e-4:
        raise RuntimeError(
            f"The mask pooling, as trained, differs from the model's own "
            f"embedding by up to {gap:.2g}; the variants are built wrong."
        )
    return gap


def pooling_aps(embedded: dict, config) -> dict:
    """(adapted, split) -> pooling name -> (Q,) AP@7 of each photo."""
    catalogue = poolings.split(embedded["catalogue"])
    pool = poolings.split(embedded["pool"])
    splits = {s: poolings.split(embedded[s]) for s in scoring.SPLITS}
    aps = {}
    for index, name in enumerate(poolings.POOLINGS):
        projection, _ = self_training.self_train(
            catalogue[index], pool[index], config
        )
        for adapted, project in ((False, lambda x: x), (True, projection)):
            projected_catalogue = project(catalogue[index])
            for split in scoring.SPLITS:
                ranked = scoring.ranked_ids(
                    project(splits[split][index]),
                    projected_catalogue,
                    embedded["catalogue_ids"],
                )
                aps.setdefault((adapted, split), {})[name] = (
                    scoring.average_precisions(ranked, embedded[f"{split}_ids"])
                )
        print(f"Scored: {name}", flush=True)
    return aps


def main(argv):
    del argv
    bench_dir = _BENCH_DIR.value
    csvs = scoring.csvs_in(os.path.join(bench_dir, "csv"))
    coarse_csv = os.path.join(bench_dir, "csv", "coarse.csv")
    if not all(map(os.path.isfile, [*csvs.values(), coarse_csv])):
        harness.skip(f"no CSVs of python -m bench.grocery in {bench_dir}")
        return
    extractor = _extractor()
    module = saved_model.ServingModule(
        poolings.variants_model(extractor), contract.DEFAULT_QUERY_ZOOMS
    )
    # The fingerprint covers the weights, not the poolings: their names too.
    key = hashlib.sha256(
        "\n".join([module.model_fingerprint, *poolings.POOLINGS]).encode()
    ).hexdigest()
    embedded = scoring.cached_npz(
        os.path.join(bench_dir, "mask_pooling", f"{key[:16]}.npz"),
        lambda: embed_all(module, csvs),
    )
    gap = check_reference(extractor, embedded, csvs)
    config = self_training.SelfTrainingConfig(rounds=_ADAPT_ROUNDS.value)
    coarse = scoring.read_coarse(coarse_csv)
    interval = dict(confidence=0.95, resamples=_RESAMPLES.value, seed=0)
    rows = []
    for (adapted, split), aps in pooling_aps(embedded, config).items():
        members = scoring.photo_groups(embedded[f"{split}_ids"], coarse)
        rows += [
            dict(row, adapted=adapted)
            for row in scoring.difference_rows(
                aps, split, members, interval, name_column="pooling"
            )
        ]
    columns = ["adapted", "pooling", *scoring.DIFFERENCE_COLUMNS]
    harness.print_table(rows, [c for c in columns if c != "export"])
    harness.write_results(
        rows,
        variant=_VARIANT.value,
        model=_WORKDIR.value or "untrained EfficientNet-Lite0, attention",
        reference_gap=gap,
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
