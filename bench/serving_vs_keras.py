"""What serving from encoded bytes costs next to the in-memory Keras model.

  python -m bench.serving_vs_keras --backbone=efficientnet_lite0 \
      --image_size=224

Exports an untrained ImageNet backbone with GAP (`harness.export_untrained`,
as `python -m beau_tf.export --backbones=...`), reloads it, and times side
by side in alternating rounds on the same images and batch size:
  serving  `serving_default` on encoded JPEG bytes (decode + resize + pad +
           model, all inside the SavedModel, as TF Serving runs it);
  keras    the in-memory Keras model in a tf.function on the already
           decoded (B, S, S, 3) pixels.
Writes bench/results/serving_vs_keras-<backbone>.json: images per second of
each (medians of the rounds) and the ratio serving / keras. Figures:
bench/RESULTS.md ("Export").
"""

import os

from absl import flags
import numpy as np
import tensorflow as tf

from beau_tf.serving import contract
from beau_tf.serving import preprocess
from bench import harness

_BACKBONE = flags.DEFINE_string("backbone", "efficientnet_lite0", "Backbone.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_PHOTO_SIZE = flags.DEFINE_string(
    "photo_size", "640x480", "Encoded photos' width x height."
)
_STEPS = flags.DEFINE_integer("steps", 4, "Timed batches per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")

SMOKE = {
    "image_size": 64,
    "batch_size": 2,
    "photo_size": "64x48",
    "steps": 1,
    "rounds": 1,
}


def images_per_second(fn, batch, batch_size: int, steps: int) -> float:
    def call():
        # Reading the result waits for the device.
        np.asarray(fn(batch)["embedding"])

    return harness.rate(call, steps, batch_size)


def main(argv):
    del argv
    size, batch_size = _IMAGE_SIZE.value, _BATCH_SIZE.value
    width, height = (int(side) for side in _PHOTO_SIZE.value.split("x"))
    model, members = harness.untrained_model([_BACKBONE.value], size)
    version_dir = harness.export(
        model, os.path.join(harness.work_dir(), "exported"), "bench", members
    )
    serving = tf.saved_model.load(version_dir).signatures[
        contract.SIGNATURE_NAME
    ]
    encoded = tf.constant(harness.photo_jpegs(batch_size, width, height))
    decoded, _ = preprocess.decode_batch(encoded, size)  # (B, S, S, 3)
    keras_fn = tf.function(lambda x: model(x, training=False))
    steps = _STEPS.value
    measured = harness.side_by_side(
        {
            "serving": lambda: images_per_second(
                lambda b: serving(images=b), encoded, batch_size, steps
            ),
            "keras": lambda: images_per_second(
                keras_fn, decoded, batch_size, steps
            ),
        },
        _ROUNDS.value,
        warmup=True,  # tracing, allocation
    )

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    ratio = measured.ratio("serving", "keras")
    print(
        f"{_BACKBONE.value} at {size} px, batch {batch_size}, "
        f"{width}x{height} JPEGs, {_ROUNDS.value} rounds x {steps} "
        f"batches, on {device} ({os.cpu_count()} CPUs); serving / keras "
        f"{ratio:.3f}:"
    )
    rows = measured.rows("images/s")
    harness.print_table(rows)
    harness.write_results(
        rows,
        variant=_BACKBONE.value,
        ratios={"serving / keras": ratio},
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
