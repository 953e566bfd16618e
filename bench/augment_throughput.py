"""Can the augmentation keep training fed? Rates measured side by side.

  python -m bench.augment_throughput                      # synthetic catalogue
  python -m bench.augment_throughput --catalog=out/grocery/catalog.csv \
      --background_dir=../shared/data/grocery-store/dataset/train

Three rates at the same image size and batch size, in one run, in alternating
rounds so machine noise hits all of them alike:
  plain      read + decode + resize of the catalogue files (the floor any
             image pipeline pays);
  augmented  the foreground-augmentation pipeline (products prepared once,
             then paste + geometry + photometry per pair);
  train      one optimizer step of a real backbone (forward + backward,
             `harness.bare_training_model`).
Writes bench/results/augment_throughput-<backbone>.json: images per second
of each (medians of the rounds) and the ratios augmented/plain and
augmented/train: above 1 the input pipeline outruns training. Figures:
bench/RESULTS.md ("Augmentation").
"""

import os

from absl import flags
import numpy as np
import tensorflow as tf

from beau_tf.data import augment
from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import pipelines
from beau_tf.data import products as products_lib
from beau_tf.datasets.synthetic import catalogue as synthetic
from bench import harness

_CATALOG = flags.DEFINE_string(
    "catalog", None, "Catalogue folder or CSV; the synthetic one when unset."
)
_BACKGROUND_DIR = flags.DEFINE_string(
    "background_dir", None, "Background photos; procedural if unset."
)
_NUM_PRODUCTS = flags.DEFINE_integer(
    "num_products", 24, "Products of the synthetic catalogue."
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_BATCHES = flags.DEFINE_integer(
    "batches", 20, "Timed pipeline batches per round."
)
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", 3, "Timed training steps per round."
)
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_BACKBONE = flags.DEFINE_string(
    "backbone",
    "resnet50",
    "Backbone whose training step is timed (randomly initialised, GAP and "
    "a linear head, AdamW); none: no training step.",
)

SMOKE = {
    "num_products": 4,
    "image_size": 64,
    "batch_size": 4,
    "batches": 2,
    "train_steps": 1,
    "rounds": 1,
    "backbone": "tiny",
}


def plain_dataset(paths: list[str], size: int, batch: int) -> tf.data.Dataset:
    """Read + decode + resize, the cheapest honest image pipeline."""

    def load(path):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=3, expand_animations=False
        )
        return tf.cast(tf.image.resize(image, [size, size]), tf.uint8)

    dataset = tf.data.Dataset.from_tensor_slices(paths).repeat()
    return (
        dataset.map(load, tf.data.AUTOTUNE)
        .batch(batch)
        .prefetch(tf.data.AUTOTUNE)
    )


def pipeline_rate(dataset: tf.data.Dataset, batches: int, batch: int) -> float:
    """Steady images/s of a fresh iterator (its first batch untimed).

    A fresh iterator per round starts with empty prefetch buffers, so the
    time spent in the other runners cannot have filled them in advance.
    """
    iterator = iter(dataset)
    next(iterator)
    return harness.rate(lambda: next(iterator), batches, batch)


def load_catalogue(size: int):
    """`(items, background folder or None)`: --catalog, or a synthetic one."""
    catalog_source, background_dir = _CATALOG.value, _BACKGROUND_DIR.value
    if not catalog_source:
        generated = synthetic.write_synthetic_catalog(
            os.path.join(harness.work_dir(), "synthetic"),
            num_products=_NUM_PRODUCTS.value,
            image_size=256,
        )
        catalog_source = generated.catalog_csv
        background_dir = background_dir or generated.backgrounds_dir
    return catalog_lib.list_catalog(catalog_source), background_dir


def main(argv):
    del argv
    size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
    items, background_dir = load_catalogue(size)
    (products, _), prepare_seconds = harness.timed(
        products_lib.prepare_products, items, size
    )
    backgrounds = None
    if background_dir:
        backgrounds, _ = backgrounds_lib.load_backgrounds(
            background_dir, backgrounds_lib.stored_size(size), max_count=500
        )

    plain = plain_dataset([item.path for item in items], size, batch)
    augmented = pipelines.make_train_dataset(
        products,
        augment.AugmentConfig(image_size=size),
        batch,
        backgrounds=backgrounds,
    )
    contenders = {
        "plain": lambda: pipeline_rate(plain, _BATCHES.value, batch),
        "augmented": lambda: pipeline_rate(augmented, _BATCHES.value, batch),
    }
    if _BACKBONE.value != "none":
        model = harness.bare_training_model(_BACKBONE.value, size, 8)
        images = (
            np.random.default_rng(0)
            .uniform(0, 255, (batch, size, size, 3))
            .astype(np.float32)
        )
        labels = np.zeros((batch,), np.int64)
        step = lambda: model.train_on_batch(images, labels)
        step()  # tracing
        contenders["train"] = lambda: harness.rate(
            step, _TRAIN_STEPS.value, batch
        )
    measured = harness.side_by_side(contenders, _ROUNDS.value)

    labels = {"train": f"train step ({_BACKBONE.value})"}
    rows = measured.rows("images/s", labels)
    ratios = {"augmented / plain": measured.ratio("augmented", "plain")}
    if "train" in contenders:
        ratios["augmented / train step"] = measured.ratio("augmented", "train")
    print(
        f"\n{len(items)} catalogue images prepared in {prepare_seconds:.1f} s "
        f"(decode + mask once); image {size} px, batch {batch}, "
        f"{_ROUNDS.value} rounds x {_BATCHES.value} batches, median rates "
        "(augmented / train step > 1: training is fed):"
    )
    harness.print_table(
        rows + [{"contender": name, "ratio": r} for name, r in ratios.items()],
        ["contender", "median images/s", "ratio"],
    )
    harness.write_results(
        rows,
        variant=_BACKBONE.value,
        ratios=ratios,
        catalogue=len(items),
        backgrounds=0 if backgrounds is None else len(backgrounds),
        prepare_seconds=prepare_seconds,
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
