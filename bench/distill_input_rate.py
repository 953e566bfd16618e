"""Does the input pipeline keep up with a distillation training step?

  nice -n 19 python -m bench.distill_input_rate [--steps=30] [--rounds=3]

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
Writes bench/results/distill_input_rate.json (medians of the rounds, the
ratios input / step and fit / step). Figures: bench/RESULTS.md ("Training").
"""

import os

from absl import flags
import numpy as np

from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.models import extractor as extractor_lib
from beau_tf.training import config as config_lib
from beau_tf.training import trainer
from bench import harness

_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per round and row.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_NUM_PRODUCTS = flags.DEFINE_integer(
    "num_products", 32, "Products of the synthetic catalogue."
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 16, "Catalogue scenes (and photos) per step."
)

SMOKE = {
    "steps": 1,
    "rounds": 1,
    "num_products": 4,
    "image_size": 64,
    "batch_size": 2,
}


def make_config(root: str) -> config_lib.TrainConfig:
    size = _IMAGE_SIZE.value
    catalog = synthetic.write_synthetic_catalog(
        os.path.join(root, "synthetic"),
        num_products=_NUM_PRODUCTS.value,
        queries_per_product=4,
        num_backgrounds=8,
        image_size=size,
    )
    photos = os.path.join(os.path.dirname(catalog.queries_csv), "queries")
    return config_lib.TrainConfig(
        extractor=extractor_lib.ExtractorConfig(
            backbone="efficientnet_lite0",
            backbone_weights="imagenet",
            image_size=size,
            pooling="attention",
            embedding_dim=256,
            trainable_from="none",
        ),
        catalog=catalog.catalog_csv,
        background_dir=photos,
        batch_size=_BATCH_SIZE.value,
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


def main(argv):
    del argv
    config = make_config(harness.work_dir())
    items = catalog_lib.list_catalog(config.catalog)
    photos, _, _ = backgrounds_lib.load_photos(
        catalog_lib.list_photos(config.photos),
        backgrounds_lib.stored_size(config.extractor.image_size),
    )
    targets = np.full((len(photos), len(items)), 1 / len(items), np.float32)
    dataset, _ = trainer.load_training_data(
        config, items, photos=(photos, targets, ())
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

    measured = harness.side_by_side(
        {
            name: lambda function=function: harness.rate(function, _STEPS.value)
            for name, function in (
                ("input", read),
                ("step", step),
                ("fit", fit),
            )
        },
        _ROUNDS.value,
    )
    rows = measured.rows("batches or steps/s")
    ratios = {
        "input / step": measured.ratio("input", "step"),
        "fit / step": measured.ratio("fit", "step"),
    }
    harness.print_table(rows)
    print(", ".join(f"{name} = {value:.2f}" for name, value in ratios.items()))
    harness.write_results(
        rows,
        ratios=ratios,
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
