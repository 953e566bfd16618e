"""Can the augmentation keep training fed? Rates measured side by side.

  python bench/augment_throughput.py                       # synthetic catalogue
  python bench/augment_throughput.py --catalog=out/grocery/catalog.csv \
      --background_dir=../shared/data/grocery-store/dataset/train

Three rates at the same image size and batch size, in one run, in alternating
rounds so machine noise hits all of them alike:
  plain      read + decode + resize of the catalogue files (the floor any
             image pipeline pays);
  augmented  the foreground-augmentation pipeline (products prepared once,
             then paste + geometry + photometry per pair);
  train      one optimizer step of a real backbone (forward + backward).
It prints pairs (images) per second and the ratios augmented/plain and
augmented/train: above 1 the input pipeline outruns training.
"""

import statistics
import tempfile
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from beau_tf.data import augment
from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import pipelines
from beau_tf.data import products as products_lib
from beau_tf.datasets.synthetic import catalogue as synthetic

_CATALOG = flags.DEFINE_string(
    "catalog", None, "Catalogue folder or CSV; the synthetic one when unset."
)
_BACKGROUND_DIR = flags.DEFINE_string(
    "background_dir", None, "Background photos; procedural if unset."
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
_BACKBONE = flags.DEFINE_enum(
    "backbone",
    "resnet50",
    ["resnet50", "efficientnet_lite0", "none"],
    "Backbone whose training step is timed.",
)


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


def backbone_step_fn(name: str, size: int):
    """A compiled train step of the backbone with a small head, on one batch."""
    if name == "resnet50":
        backbone = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=(size, size, 3)
        )
    else:
        from beau_tf.models import (
            efficientnet_lite,
        )  # pylint: disable=g-import-not-at-top

        backbone = efficientnet_lite.build_efficientnet_lite(
            "lite0", input_shape=(size, size, 3), weights=None
        )
    model = keras.Sequential(
        [backbone, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    return model


def pipeline_rate(dataset: tf.data.Dataset, batches: int, batch: int) -> float:
    """Steady images/s of a fresh iterator (its first batch untimed).

    A fresh iterator per round starts with empty prefetch buffers, so the
    time spent in the other runners cannot have filled them in advance.
    """
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def train_rate(step, batches: int, batch: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * batch / (time.perf_counter() - start)


def main(argv):
    del argv
    size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
    catalog_source, background_dir = _CATALOG.value, _BACKGROUND_DIR.value
    if not catalog_source:
        generated = synthetic.write_synthetic_catalog(
            tempfile.mkdtemp(prefix="beau_tf_bench_"),
            num_products=24,
            image_size=256,
        )
        catalog_source = generated.catalog_csv
        background_dir = background_dir or generated.backgrounds_dir
    items = catalog_lib.list_catalog(catalog_source)

    start = time.perf_counter()
    products, _ = products_lib.prepare_products(items, size)
    prepare_seconds = time.perf_counter() - start
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
    runners = {
        "plain": lambda: pipeline_rate(plain, _BATCHES.value, batch),
        "augmented": lambda: pipeline_rate(augmented, _BATCHES.value, batch),
    }
    if _BACKBONE.value != "none":
        model = backbone_step_fn(_BACKBONE.value, size)
        images = (
            np.random.default_rng(0)
            .uniform(0, 255, (batch, size, size, 3))
            .astype(np.float32)
        )
        labels = np.zeros((batch,), np.int64)
        step = lambda: model.train_on_batch(images, labels)
        step()  # tracing
        runners["train"] = lambda: train_rate(step, _TRAIN_STEPS.value, batch)

    rates = {name: [] for name in runners}
    for _ in range(_ROUNDS.value):
        for name, run in runners.items():
            rates[name].append(run())
    median = {name: statistics.median(values) for name, values in rates.items()}

    print(
        f"\n{len(items)} catalogue images prepared in {prepare_seconds:.1f} s "
        f"(decode + mask once); image {size} px, batch {batch}, "
        f"{_ROUNDS.value} rounds x {_BATCHES.value} batches, median rates:"
    )
    for name, rate in median.items():
        label = f"train step ({_BACKBONE.value})" if name == "train" else name
        print(f"  {label:28s} {rate:8.1f} images/s")
    print(
        f"  augmented / plain            {median['augmented'] / median['plain']:8.2f}"
    )
    if "train" in median:
        print(
            f"  augmented / train step       "
            f"{median['augmented'] / median['train']:8.2f}  (> 1: training is fed)"
        )


if __name__ == "__main__":
    app.run(main)
