r"""What serving from encoded bytes costs next to the in-memory Keras model.

  python bench/serving_vs_keras.py --backbone=efficientnet_lite0 \
      --image_size=224

Exports an extractor (random weights: timing only) with
`beau_tf.serving.saved_model.export_saved_model`, reloads it, and times side by side in
alternating rounds on the same images and batch size:
  serving  `serving_default` on encoded JPEG bytes (decode + resize + pad +
           model, all inside the SavedModel, as TF Serving runs it);
  keras    the in-memory Keras model in a tf.function on the already
           decoded (B, S, S, 3) pixels.
Prints images per second of each and the ratio serving / keras.
"""

import io
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf

from beau_tf.models import extractor as extractor_lib
from beau_tf.serving import preprocess
from beau_tf.serving import saved_model

_BACKBONE = flags.DEFINE_string("backbone", "efficientnet_lite0", "Backbone.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_PHOTO_SIZE = flags.DEFINE_string(
    "photo_size", "640x480", "Encoded photos' width x height."
)
_STEPS = flags.DEFINE_integer("steps", 4, "Timed batches per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")


def photo_bytes(count: int, width: int, height: int) -> tf.Tensor:
    """(count,) JPEG photos: smooth gradients plus noise, like real photos."""
    rng = np.random.default_rng(0)
    encoded = []
    y, x = np.mgrid[0:height, 0:width]
    for _ in range(count):
        base = rng.uniform(0, 255, 3) * (x[..., None] / width) + rng.uniform(
            0, 255, 3
        ) * (y[..., None] / height)
        noisy = base / 2 + rng.normal(0, 12, (height, width, 3))
        pixels = np.clip(noisy, 0, 255).astype(np.uint8)
        stream = io.BytesIO()
        Image.fromarray(pixels).save(stream, format="JPEG", quality=90)
        encoded.append(stream.getvalue())
    return tf.constant(encoded)


def images_per_second(fn, batch, batch_size: int, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        outputs = fn(batch)
    np.asarray(outputs["embedding"])  # waits for the device
    return batch_size * steps / (time.perf_counter() - start)


def main(argv):
    del argv
    size, batch_size = _IMAGE_SIZE.value, _BATCH_SIZE.value
    width, height = (int(side) for side in _PHOTO_SIZE.value.split("x"))
    model = extractor_lib.build_extractor(
        extractor_lib.ExtractorConfig(
            backbone=_BACKBONE.value, backbone_weights="none", image_size=size
        )
    )
    with tempfile.TemporaryDirectory() as base:
        version_dir = saved_model.export_saved_model(model, base, "bench")
        serving = tf.saved_model.load(version_dir).signatures["serving_default"]
        encoded = photo_bytes(batch_size, width, height)
        decoded, _ = preprocess.decode_batch(encoded, size)  # (B, S, S, 3)
        keras_fn = tf.function(lambda x: model(x, training=False))
        contenders = {
            "serving": lambda: images_per_second(
                lambda b: serving(images=b), encoded, batch_size, _STEPS.value
            ),
            "keras": lambda: images_per_second(
                keras_fn, decoded, batch_size, _STEPS.value
            ),
        }
        for run in contenders.values():  # warm-up: tracing, allocation
            run()
        rates = {name: [] for name in contenders}
        for _ in range(_ROUNDS.value):
            for name, run in contenders.items():
                rates[name].append(run())

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"{_BACKBONE.value} at {size} px, batch {batch_size}, "
        f"{width}x{height} JPEGs, {_ROUNDS.value} rounds x {_STEPS.value} "
        f"batches, on {device} ({os.cpu_count()} CPUs):"
    )
    for name, values in rates.items():
        spread = ", ".join(f"{value:.1f}" for value in values)
        print(f"  {name:8s} {median[name]:8.1f} images/s  (rounds: {spread})")
    print(f"  ratio serving / keras: {median['serving'] / median['keras']:.3f}")


if __name__ == "__main__":
    app.run(main)
