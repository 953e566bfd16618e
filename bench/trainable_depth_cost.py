"""What training more of the backbone costs per step.

  python -m bench.trainable_depth_cost --backbone=efficientnet_lite0 \
      --depths=none,block7a_expand_conv,block6a_expand_conv,every_layer,every_layer_but_batchnorm

Times beau_tf's training model (`harness.full_training_model`: backbone,
mask decoder with its MSE, attention pooling, embedding, ArcFace head) at
each depth, side by side in alternating rounds on the same random batch.
A depth is what `--trainable_from` takes (the first trainable layer;
"none" freezes the backbone), or
  every_layer                 --trainable_from= (all of it, BatchNorm too);
  every_layer_but_batchnorm   --trainable_from= --notrain_batchnorm.
Writes bench/results/trainable_depth_cost-<backbone>.json: steps per second
at each depth (medians of the rounds), the trainable weights, and each
depth's time per step over the first depth's. A distillation step also
embeds its photo crops, so its absolute rate is lower; the ratios are what
this bench is for. Figures: bench/RESULTS.md ("Model").
"""

from absl import flags
import numpy as np

from bench import harness

EVERY_LAYER = "every_layer"
EVERY_LAYER_BUT_BATCHNORM = "every_layer_but_batchnorm"

_BACKBONE = flags.DEFINE_string("backbone", "efficientnet_lite0", "Backbone.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_DEPTHS = flags.DEFINE_list(
    "depths",
    [
        "none",
        "block7a_expand_conv",
        "block6a_expand_conv",
        EVERY_LAYER,
        EVERY_LAYER_BUT_BATCHNORM,
    ],
    "Depths to time, the reference first: backbone layer names (the first "
    f"trainable one), 'none', '{EVERY_LAYER}' or '{EVERY_LAYER_BUT_BATCHNORM}'.",
)
_STEPS = flags.DEFINE_integer("steps", 4, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_NUM_CLASSES = 81

SMOKE = {
    "backbone": "tiny",
    "image_size": 64,
    "batch_size": 2,
    "depths": ["none", "stage4_conv", EVERY_LAYER, EVERY_LAYER_BUT_BATCHNORM],
    "steps": 1,
    "rounds": 1,
}


def trainable_settings(depth: str) -> dict:
    """The `trainable_from` and `train_batchnorm` that `depth` names."""
    if depth == EVERY_LAYER:
        return {"trainable_from": "", "train_batchnorm": True}
    if depth == EVERY_LAYER_BUT_BATCHNORM:
        return {"trainable_from": "", "train_batchnorm": False}
    return {"trainable_from": depth, "train_batchnorm": True}


def main(argv):
    del argv
    size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
    depths = _DEPTHS.value
    if not depths or len(set(depths)) != len(depths):
        raise ValueError(f"--depths={depths!r}: expected distinct depths.")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    masks = (rng.uniform(size=(batch, size, size, 1)) > 0.5).astype(np.float32)
    labels = rng.integers(0, _NUM_CLASSES, (batch,)).astype(np.int32)

    models = {
        depth: harness.full_training_model(
            _BACKBONE.value, size, _NUM_CLASSES, **trainable_settings(depth)
        )
        for depth in depths
    }

    def step(model):
        return model.train_on_batch(
            {"image": images, "label": labels},
            {"mask": masks, "logits": labels},
        )

    measured = harness.side_by_side(
        {
            depth: lambda model=model: harness.rate(
                lambda: step(model), _STEPS.value
            )
            for depth, model in models.items()
        },
        _ROUNDS.value,
        warmup=True,  # tracing
    )
    rows = measured.rows("steps/s")
    for row, model in zip(rows, models.values()):
        row["trainable weights"] = sum(
            int(np.prod(w.shape)) for w in model.trainable_weights
        )
        # Time per step over the reference's: the reference's rate over this.
        row["time per step / first"] = measured.ratio(
            depths[0], row["contender"]
        )
    print(
        f"\n{_BACKBONE.value} at {size} px, batch {batch}, "
        f"{_ROUNDS.value} rounds x {_STEPS.value} steps; time per step "
        f"relative to {depths[0]}:"
    )
    harness.print_table(
        rows,
        [
            "contender",
            "trainable weights",
            "median steps/s",
            "time per step / first",
        ],
    )
    harness.write_results(
        rows,
        variant=_BACKBONE.value,
        ratios={
            f"time per step, {depth} / {depths[0]}": row[
                "time per step / first"
            ]
            for depth, row in zip(depths[1:], rows[1:])
        },
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
