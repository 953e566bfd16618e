r"""Does the input pipeline keep up with a distillation training step?

  nice -n 19 python bench/distill_input_rate.py [--steps=30] [--rounds=3]

The training run of `configs/distill.flags` reads two streams per step: 16
augmented catalogue scenes (`pipelines.make_train_dataset`, pasted on real
photos) and 16 cropped unlabelled photos with their soft targets
(`pipelines.make_photo_dataset`). On a synthetic catalogue (32 products,
their query photos as the unlabelled photos and as backgrounds, targets
uniform: no teacher is needed to time the input), with the model of
`configs/efficientnet_lite0.flags` + `grocery_cpu.flags` + `distill.flags`
(ImageNet Lite0 at 224 px, frozen, attention pooling, 256-d projection,
identity head), in alternating rounds of one run:

  input   batches/s of `trainer.load_training_data`'s dataset alone;
  step    training steps/s on one batch held in memory (no input at all);
  fit     training steps/s reading the dataset, as `python -m beau_tf.train`.

The pipeline is not the bottleneck when input >> step and fit ~= step.
"""

import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.models import extractor as extractor_lib
from beau_tf.training import config as config_lib
from beau_tf.training import trainer

_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per round and row.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_PRODUCTS = 32
_SIZE = 224


def make_config(root: str) -> config_lib.TrainConfig:
    catalog = synthetic.write_synthetic_catalog(
        os.path.join(root, "synthetic"),
        num_products=_PRODUCTS,
        queries_per_product=4,
        num_backgrounds=8,
        image_size=_SIZE,
    )
    photos = os.path.join(os.path.dirname(catalog.queries_csv), "queries")
    return config_lib.TrainConfig(
        extractor=extractor_lib.ExtractorConfig(
            backbone="efficientnet_lite0",
            backbone_weights="imagenet",
            image_size=_SIZE,
            pooling="attention",
            embedding_dim=256,
            trainable_from="none",
        ),
        catalog=catalog.catalog_csv,
        background_dir=photos,
        batch_size=16,
        steps=1000,
        checkpoint_every=50,
        learning_rate=3e-3,
        warmup_steps=20,
        identity_loss_weight=0.3,
        identity_margin=0.0,
        identity_scale=20.0,
        photo_loss_weight=1.0,
        photos=photos,
        teacher="(uniform targets; no teacher)",
    )


def rate(function, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        function()
    return count / (time.perf_counter() - start)


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as root:
        config = make_config(root)
        items = catalog_lib.list_catalog(config.catalog)
        photos, _, _ = backgrounds_lib.load_photos(
            catalog_lib.list_photos(config.photos),
            backgrounds_lib.stored_size(_SIZE),
        )
        targets = np.full((len(photos), len(items)), 1 / len(items), np.float32)
        dataset, _ = trainer.load_training_data(
            config, items, photos=(photos, targets)
        )
        _, model, _ = trainer.build_models(config, len(items))
        stream = iter(dataset)
        held = next(stream)
        model.train_on_batch(*held)  # builds and traces

        def read():
            next(stream)

        def step():
            model.train_on_batch(*held)

        def fit():
            model.train_on_batch(*next(stream))

        rows = {"input": [], "step": [], "fit": []}
        for _ in range(_ROUNDS.value):
            for name, function in (
                ("input", read),
                ("step", step),
                ("fit", fit),
            ):
                rows[name].append(rate(function, _STEPS.value))
        medians = {name: statistics.median(v) for name, v in rows.items()}
        print("| row | batches or steps / s (median of rounds) | rounds |")
        print("|---|---:|---|")
        for name, values in rows.items():
            print(
                f"| {name} | {medians[name]:.2f} | "
                + ", ".join(f"{v:.2f}" for v in values)
                + " |"
            )
        print(
            f"\ninput / step = {medians['input'] / medians['step']:.1f}; "
            f"fit / step = {medians['fit'] / medians['step']:.2f}"
        )


if __name__ == "__main__":
    app.run(main)
