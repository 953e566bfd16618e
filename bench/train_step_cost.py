"""What the mask decoder, attention pooling and identity head cost per step.

  python -m bench.train_step_cost --backbone=efficientnet_lite0 --image_size=224
  python -m bench.train_step_cost --backbone=resnet50 --image_size=224

Times, side by side in alternating rounds on the same random batch:
  bare   the backbone's forward + backward with global average pooling and
         a linear head (what any fine-tuning pays);
  full   beau_tf's training model: backbone, mask decoder (MSE), attention
         pooling, embedding and the ArcFace identity head.
Writes bench/results/train_step_cost-<backbone>.json: steps per second of
each (medians of the rounds) and the ratio full / bare. Figures:
bench/RESULTS.md ("Model").
"""

from absl import flags
import numpy as np

from bench import harness

_BACKBONE = flags.DEFINE_string("backbone", "efficientnet_lite0", "Backbone.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 4, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_NUM_CLASSES = 81

SMOKE = {
    "backbone": "tiny",
    "image_size": 64,
    "batch_size": 2,
    "steps": 1,
    "rounds": 1,
}


def main(argv):
    del argv
    size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    masks = (rng.uniform(size=(batch, size, size, 1)) > 0.5).astype(np.float32)
    labels = rng.integers(0, _NUM_CLASSES, (batch,)).astype(np.int32)

    bare = harness.bare_training_model(_BACKBONE.value, size, _NUM_CLASSES)
    full = harness.full_training_model(_BACKBONE.value, size, _NUM_CLASSES)
    steps = {
        "bare": lambda: bare.train_on_batch(images, labels),
        "full": lambda: full.train_on_batch(
            {"image": images, "label": labels},
            {"mask": masks, "logits": labels},
        ),
    }
    for step in steps.values():  # tracing and warm-up
        step()
    measured = harness.side_by_side(
        {
            name: lambda step=step: harness.rate(step, _STEPS.value)
            for name, step in steps.items()
        },
        _ROUNDS.value,
        warmup=True,
    )
    rows = measured.rows("steps/s")
    for row in rows:
        row["median images/s"] = row["median steps/s"] * batch
    ratio = measured.ratio("full", "bare")
    print(
        f"\n{_BACKBONE.value} at {size} px, batch {batch}, "
        f"{_ROUNDS.value} rounds x {_STEPS.value} steps; full / bare "
        f"{ratio:.3f} (1 = the paper's additions are free):"
    )
    harness.print_table(
        rows, ["contender", "median steps/s", "median images/s"]
    )
    harness.write_results(
        rows,
        variant=_BACKBONE.value,
        ratios={"full / bare": ratio},
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
