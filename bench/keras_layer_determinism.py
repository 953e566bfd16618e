"""Why beau_tf drives its augmentation with stateless per-element seeds.

  python -m bench.keras_layer_determinism

Keras 3's image augmentation layers transform `images` and
`segmentation_masks` together, but draw their randomness from a stateful
`SeedGenerator`. Inside a parallel `tf.data` map the order in which elements
reach that generator varies from run to run, so two runs with the same seed
can give different pairs. beau_tf's ops take a stateless `(run seed, element
index)` seed instead. This script runs both twice over the same inputs and
counts how many elements came out identical; writes
bench/results/keras_layer_determinism.json. Figures: bench/RESULTS.md
("Augmentation").
"""

from absl import flags
import keras
import numpy as np
import tensorflow as tf

from beau_tf.data import augment
from bench import harness

_COUNT = flags.DEFINE_integer("count", 256, "Elements augmented per run.")
_SIZE = 64

SMOKE = {"count": 16}


def _inputs() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (_COUNT.value, _SIZE, _SIZE, 3)).astype(
        np.float32
    )
    masks = (rng.uniform(size=(_COUNT.value, _SIZE, _SIZE, 1)) > 0.5).astype(
        np.float32
    )
    return tf.data.Dataset.from_tensor_slices((images, masks))


def keras_layers_run(parallel_calls: int | None) -> np.ndarray:
    layers = [
        keras.layers.RandomRotation(0.1, seed=1),
        keras.layers.RandomZoom(0.2, seed=2),
    ]

    def apply(image, mask):
        data = {"images": image, "segmentation_masks": mask}
        for layer in layers:
            data = layer(data, training=True)
        return data["images"]

    dataset = _inputs().map(
        apply, num_parallel_calls=parallel_calls, deterministic=True
    )
    return np.stack([x.numpy() for x in dataset])


def stateless_run() -> np.ndarray:
    config = augment.AugmentConfig.geometry_only(_SIZE)

    def apply(index, pair):
        image, mask = pair
        sprite = tf.concat([image, mask * 255.0], axis=-1)
        placement = augment.sample_placement(
            augment.element_seed(1, index), config
        )
        return augment.warp_product(tf.cast(sprite, tf.uint8), placement)[0]

    dataset = (
        _inputs()
        .enumerate()
        .map(apply, num_parallel_calls=8, deterministic=True)
    )
    return np.stack([x.numpy() for x in dataset])


def main(argv):
    del argv
    runs = (
        ("keras 3 layers, sequential map", lambda: keras_layers_run(None)),
        ("keras 3 layers, 8 parallel calls", lambda: keras_layers_run(8)),
        ("beau_tf stateless, 8 parallel", stateless_run),
    )
    rows = []
    for name, run in runs:
        first, second = run(), run()
        same = sum(np.array_equal(a, b) for a, b in zip(first, second))
        rows.append({"run": name, "identical": int(same), "of": len(first)})
    harness.print_table(rows)
    harness.write_results(rows)


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
