r"""Learning from the catalogue alone, without gradients: a ridge-LDA
projection fitted on augmented catalogue scenes, against the untrained model,
on GroceryStore, side by side.

  nice -n 19 python -m bench.augmentation_lda \
      [--dataset_dir=../shared/data/grocery-store/dataset] \
      [--out_dir=out/bench_augmentation_lda] [--views_per_product=32] \
      [--procedural_views_per_product=16] [--ridge=30] [--seed=0]

The model is the off-the-shelf ImageNet EfficientNet-Lite0 at 224 px with
global average pooling (`beau_tf.models.extractor`), frozen. Each catalogue
product is pasted by the training augmentation (`beau_tf.data.pipelines.
make_train_dataset`, `AugmentConfig` defaults) into
`--views_per_product` scenes on real photos (600 of the unlabelled train/
photos, dev2 excluded, `beau_tf.data.backgrounds.load_backgrounds`) and, for
the last row, `--procedural_views_per_product` procedural scenes more. The
model embeds these views and the 81 clean catalogue shots; their labels are
the catalogue products they were made from (known from the catalogue, never
from a photo). The projection whitens the within-class scatter S_w of those
embeddings at full rank:

  P = U diag(e)^-1/2,  U diag(e) U^T = S_w + ridge * mean(eig(S_w)) * I,
  embed(x) = normalise((g(x) - mu) @ P),

mu the mean of all the samples. `self_training.fit_discriminant_projection`
is not used: it keeps only the top K - 1 = 80 between-class directions, which
scored lower here than whitening at full rank (the probe this bench
reproduces measured, on real views at ridge 1, 0.569 / 0.512 with 80
directions against 0.583 / 0.540 with all, val / dev2).

Scoring: the untrained model is exported with `beau_tf.serving.saved_model`;
the catalogue is embedded with its `serving_default` signature and the
val / dev2 photos with `query_multiscale` (zooms 1.0, 0.75, 0.5), once,
through `beau_tf.serving.embedding`. A row's projection is then applied to
those embeddings as `saved_model.ServingModule` applies a baked-in one (to
the multiscale mean), and the run checks that by exporting the last row's
projection and comparing its signatures with the numpy figures on a few
photos. Exact search, MAP@7 (`map@7_hits`) of `beau_tf.retrieval.metrics`.

Honesty: the projection learns from the 81 catalogue images and, as
backgrounds, unlabelled train/ photos less dev2 (`photos_unlabelled.csv`);
labels of val and dev2 are read only to score.

Times: "augment + embed" is catalogue sprites + background decoding +
rendering and embedding the views (the last row adds its procedural views);
"fit" is the projection's fit (the fastest of 3). Everything is cached
under --out_dir (the exports, the query embeddings, the views and their
times), so a rerun costs seconds and reprints the times measured when the
views were made; delete <out_dir>/cache to measure again.

Writes bench/results/augmentation_lda.json (one row per model) and
<out_dir>/table.md. Figures, the seeds' spread and the variants tried and
not kept: bench/RESULTS.md ("Training").
"""

import json
import os
import time

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from beau_tf.adaptation import self_training
from beau_tf.data import augment
from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import pipelines
from beau_tf.data import products as products_lib
from beau_tf.datasets import grocery
from beau_tf.retrieval import metrics
from beau_tf.serving import contract
from bench import harness
from bench import scoring

_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir",
    str(harness.GROCERY_DATASET),
    "GroceryStoreDataset's dataset/ folder.",
)
_OUT_DIR = flags.DEFINE_string(
    "out_dir", "out/bench_augmentation_lda", "Where everything is written."
)
_VIEWS = flags.DEFINE_integer(
    "views_per_product",
    32,
    "Augmented scenes per product on real (unlabelled, non-dev2) photos.",
)
_PROCEDURAL_VIEWS = flags.DEFINE_integer(
    "procedural_views_per_product",
    16,
    "Augmented scenes per product on procedural backgrounds (last row).",
)
_RIDGE = flags.DEFINE_float(
    "ridge",
    30.0,
    "Added to the within-class covariance, in units of its mean eigenvalue.",
)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seeds the augmentation and the choice of backgrounds."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 224, "Image size of the model (Lite0's native 224)."
)

SMOKE = {
    "dataset_dir": lambda work_dir: harness.write_grocery_like(
        os.path.join(work_dir, "grocery")
    ),
    "out_dir": lambda work_dir: os.path.join(work_dir, "out"),
    "views_per_product": 1,
    "procedural_views_per_product": 1,
    "image_size": 64,
}
# Real backgrounds decoded (a seeded subset of the ~2,300 unlabelled photos):
# bounds memory at 600 * 280 * 280 * 3 bytes, as in the probe reproduced.
_MAX_BACKGROUNDS = 600
_BATCH = 32
_SERVED_CHECK_PHOTOS = 32
_FIT_REPEATS = 3


def embed_views(model, dataset: tf.data.Dataset, num_batches: int):
    """Embeddings (N, D) and labels (N,) of `num_batches` augmented batches."""
    size = _IMAGE_SIZE.value

    @tf.function(
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)]
    )
    def embed(images):  # (B, S, S, 3) -> (B, D)
        return model(tf.cast(images, tf.float32), training=False)["embedding"]

    embeddings, labels = [], []
    for batch in dataset.take(num_batches):
        embeddings.append(embed(batch["image"]).numpy())
        labels.append(batch["label"].numpy())
    return np.concatenate(embeddings), np.concatenate(labels)


def make_views(
    model, csvs: dict, views: int, procedural_views: int, seed: int
) -> dict:
    """Augmented catalogue views, embedded, with the seconds each part took.

    Returns:
      `{"real", "real_labels", "procedural", "procedural_labels", "seconds"}`,
      seconds a JSON string of `{"sprites", "backgrounds", "real",
      "procedural"}`.
    """
    seconds = {}
    start = time.perf_counter()
    items = catalog_lib.list_catalog(csvs["catalog"])
    size = _IMAGE_SIZE.value
    products, report = products_lib.prepare_products(items, size)
    if len(products) != len(items):
        raise ValueError(f"Catalogue sprites: {report.summary()}")
    seconds["sprites"] = time.perf_counter() - start

    start = time.perf_counter()
    dev2 = {q.path for q in catalog_lib.read_queries(csvs["queries_dev2"])}
    leaked = dev2 & set(catalog_lib.list_photos(csvs["photos_unlabelled"]))
    if leaked:
        raise ValueError(f"{len(leaked)} dev2 photos among the backgrounds.")
    backgrounds, _ = backgrounds_lib.load_backgrounds(
        csvs["photos_unlabelled"],
        backgrounds_lib.stored_size(size),
        max_count=_MAX_BACKGROUNDS,
        seed=seed,
    )
    seconds["backgrounds"] = time.perf_counter() - start

    config = augment.AugmentConfig(image_size=size)
    result = {}
    for name, scenes, per_product in (
        ("real", backgrounds, views),
        ("procedural", None, procedural_views),
    ):
        start = time.perf_counter()
        dataset = pipelines.make_train_dataset(
            products, config, _BATCH, seed=seed, backgrounds=scenes
        )
        num_batches = max(1, len(products) * per_product // _BATCH)
        result[name], result[f"{name}_labels"] = embed_views(
            model, dataset, num_batches
        )
        seconds[name] = time.perf_counter() - start
        logging.info(
            "%d %s views embedded in %.0f s.",
            len(result[name]),
            name,
            seconds[name],
        )
    result["seconds"] = json.dumps(seconds)
    return result


def fit_within_class_whitening(
    embeddings: np.ndarray, labels: np.ndarray, ridge: float
) -> self_training.Projection:
    """Full-rank ridge-LDA: whitens the within-class scatter of labelled
    embeddings (see the module docstring).

    Args:
      embeddings: (N, D) unit embeddings.
      labels: (N,) int class of each row.
      ridge: added to S_w's diagonal, in units of its mean eigenvalue.

    Returns:
      The projection, D -> D.
    """
    samples = np.asarray(embeddings, np.float64)
    classes, index = np.unique(labels, return_inverse=True)
    means = np.zeros((len(classes), samples.shape[1]))
    np.add.at(means, index, samples)
    means /= np.bincount(index)[:, None]
    residuals = samples - means[index]
    within = residuals.T @ residuals / len(samples)  # (D, D)
    size = within.shape[0]
    values, vectors = np.linalg.eigh(
        within + ridge * np.trace(within) / size * np.eye(size)
    )
    return self_training.Projection(
        samples.mean(0).astype(np.float32),
        (vectors / np.sqrt(values)).astype(np.float32),
    )


def lda_rows(made: dict, embedded: dict, ridge: float):
    """One table row per projection (real views; real + procedural), each
    fitted on its views and the clean catalogue shots.

    Returns:
      `(rows, the last projection)`.
    """
    seconds = json.loads(str(made["seconds"]))
    build = seconds["sprites"] + seconds["backgrounds"]
    rows = []
    for label, parts in (
        ("aug-LDA (real backgrounds)", ("real",)),
        ("aug-LDA (real + procedural)", ("real", "procedural")),
    ):
        samples = np.concatenate(
            [made[p] for p in parts] + [embedded["catalogue"]]
        )
        labels = np.concatenate(
            [made[f"{p}_labels"] for p in parts]
            + [embedded["catalogue_labels"]]
        )
        fit_seconds = np.inf
        for _ in range(_FIT_REPEATS):  # the fastest: a shared CPU is noisy
            start = time.perf_counter()
            projection = fit_within_class_whitening(samples, labels, ridge)
            fit_seconds = min(fit_seconds, time.perf_counter() - start)
        build += seconds[parts[-1]]
        rows.append(
            {
                "model": label,
                **scoring.score(embedded, projection),
                "samples": len(samples),
                "augment + embed (s)": round(build),
                "fit (ms)": round(1000 * fit_seconds),
            }
        )
    return rows, projection


def served_check(
    model,
    export_base: str,
    name: str,
    csvs: dict,
    embedded: dict,
    projection: self_training.Projection,
    adaptation: dict,
) -> tuple[str, float]:
    """Exports `model` with `projection` baked in, as deployment would, and
    compares its signatures with the numpy projection of the plain export's
    embeddings on the catalogue and the first val photos.

    Returns:
      `(the export, max |served - numpy|)`.
    """
    model_dir = harness.export(
        model,
        export_base,
        name,
        projection=(projection.mean, projection.matrix),
        adaptation=adaptation,
    )
    items = catalog_lib.list_catalog(csvs["catalog"])
    queries = catalog_lib.read_queries(csvs["queries_val"])
    photos = [q.path for q in queries[:_SERVED_CHECK_PHOTOS]]
    served = (
        scoring.embed_paths(
            model_dir, [i.path for i in items], contract.SIGNATURE_NAME
        ),
        scoring.embed_paths(
            model_dir, photos, contract.MULTISCALE_SIGNATURE_NAME
        ),
    )
    expected = (
        projection(embedded["catalogue"]),
        projection(embedded["val"][: len(photos)]),
    )
    return model_dir, max(
        float(np.abs(a - b).max()) for a, b in zip(served, expected)
    )


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    dataset_dir = harness.find_grocery(_DATASET_DIR.value)
    if dataset_dir is None:
        return
    started = time.perf_counter()
    out_dir, seed, ridge = _OUT_DIR.value, _SEED.value, _RIDGE.value
    views, procedural_views = _VIEWS.value, _PROCEDURAL_VIEWS.value
    csvs = grocery.convert_grocery_store(
        dataset_dir, os.path.join(out_dir, "csv")
    )
    size = _IMAGE_SIZE.value
    model, members = harness.untrained_model(["efficientnet_lite0"], size)
    exported = os.path.join(out_dir, "exported")
    name = f"efficientnet_lite0_{size}_gap"
    plain_dir = harness.export(model, exported, name, members)
    embedded = scoring.cached_npz(
        os.path.join(out_dir, "cache", "queries.npz"),
        lambda: scoring.embed_catalogue_and_queries(plain_dir, csvs),
    )
    made = scoring.cached_npz(
        os.path.join(
            out_dir, "cache", f"views_{views}_{procedural_views}_{seed}.npz"
        ),
        lambda: make_views(model, csvs, views, procedural_views, seed),
    )
    rows = [
        {
            "model": "untrained (ImageNet Lite0, GAP)",
            **scoring.score(embedded),
        }
    ]
    lda, projection = lda_rows(made, embedded, ridge)
    adapted_dir, difference = served_check(
        model,
        exported,
        f"{name}_aug_lda_{views}_{procedural_views}_{ridge:g}_{seed}",
        csvs,
        embedded,
        projection,
        {
            "method": "ridge-LDA on augmented catalogue views",
            "views_per_product": views,
            "procedural_views_per_product": procedural_views,
            "ridge": ridge,
            "seed": seed,
        },
    )

    columns = ["model"] + [f"{s} MAP@7" for s in scoring.SPLITS]
    columns += ["samples", "augment + embed (s)", "fit (ms)"]
    text = metrics.format_table(rows + lda, columns, markdown=True)
    with open(os.path.join(out_dir, "table.md"), "w") as stream:
        stream.write(text + "\n")
    print(text)
    print(
        f"\nServed check ({adapted_dir}): max |signature - numpy| = "
        f"{difference:.1e} over the catalogue and {_SERVED_CHECK_PHOTOS} val "
        "photos (multiscale)."
    )
    print(f"Total {time.perf_counter() - started:.0f} s.")
    harness.write_results(
        rows + lda,
        served_check={"export": adapted_dir, "max abs difference": difference},
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
