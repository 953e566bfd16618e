"""What the mask decoder, attention pooling and identity head cost per step.

  python bench/train_step_cost.py --backbone=efficientnet_lite0 --image_size=224
  python bench/train_step_cost.py --backbone=resnet50 --image_size=224

Times, side by side in alternating rounds on the same random batch:
  bare   the backbone's forward + backward with global average pooling and
         a linear head (what any fine-tuning pays);
  full   beau_tf's training model: backbone, mask decoder (MSE), attention
         pooling, embedding and the ArcFace identity head.
Prints steps per second of each and the ratio full / bare.
"""

import statistics
import time

from absl import app
from absl import flags
import keras
import numpy as np

from beau_tf.models import backbones
from beau_tf.models import extractor as extractor_lib
from beau_tf.models import losses

_BACKBONE = flags.DEFINE_string("backbone", "efficientnet_lite0", "Backbone.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 4, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_NUM_CLASSES = 81


def bare_model(name: str, size: int) -> keras.Model:
    backbone = backbones.build_backbone(name, "none", size)
    image = keras.Input((size, size, 3))
    features = backbone(image)[backbones.feature_key(32)]
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(_NUM_CLASSES)(pooled)
    model = keras.Model(image, logits)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def full_model(name: str, size: int) -> keras.Model:
    extractor = extractor_lib.build_extractor(
        extractor_lib.ExtractorConfig(
            backbone=name, backbone_weights="none", image_size=size
        )
    )
    model = extractor_lib.build_training_model(extractor, _NUM_CLASSES)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss={"mask": losses.mask_mse, "logits": losses.build_identity_loss()},
    )
    return model


def steps_per_second(step, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        step()
    return count / (time.perf_counter() - start)


def main(argv):
    del argv
    size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    masks = (rng.uniform(size=(batch, size, size, 1)) > 0.5).astype(np.float32)
    labels = rng.integers(0, _NUM_CLASSES, (batch,)).astype(np.int32)

    bare = bare_model(_BACKBONE.value, size)
    full = full_model(_BACKBONE.value, size)
    runners = {
        "bare": lambda: bare.train_on_batch(images, labels),
        "full": lambda: full.train_on_batch(
            {"image": images, "label": labels},
            {"mask": masks, "logits": labels},
        ),
    }
    for run in runners.values():  # tracing and warm-up
        run()
        run()
    rates = {name: [] for name in runners}
    for _ in range(_ROUNDS.value):
        for name, run in runners.items():
            rates[name].append(steps_per_second(run, _STEPS.value))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"\n{_BACKBONE.value} at {size} px, batch {batch}, "
        f"{_ROUNDS.value} rounds x {_STEPS.value} steps, median:"
    )
    for name, rate in median.items():
        print(f"  {name:5s} {rate:7.3f} steps/s  {rate * batch:7.1f} images/s")
    print(
        f"  full / bare  {median['full'] / median['bare']:.3f}  "
        "(1 = the paper's additions are free)"
    )


if __name__ == "__main__":
    app.run(main)
