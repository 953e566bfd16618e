"""What a training step costs: the paper's additions, and how much of the
backbone trains.

  python -m bench.train_step_cost --backbone=efficientnet_lite0 --image_size=224
  python -m bench.train_step_cost --backbone=resnet50 --image_size=224 \
      --depths=every_layer,conv5_block1_1_conv

Times, side by side in alternating rounds on the same random batch:
  bare          the backbone's forward + backward with global average
                pooling and a linear head, every layer training (what any
                fine-tuning pays), when --depths names every_layer;
  full <depth>  beau_tf's training model (`harness.full_training_model`:
                backbone, mask decoder with its MSE, attention pooling,
                embedding, ArcFace identity head) with the backbone
                training from each of --depths.
A depth is what `--trainable_from` takes (the first trainable layer;
"none" freezes the backbone), or
  every_layer                 --trainable_from= (all of it, BatchNorm too);
  every_layer_but_batchnorm   --trainable_from= --notrain_batchnorm.
Writes bench/results/train_step_cost-<backbone>.json: steps per second of
each (medians of the rounds), the trainable weights, the ratio full / bare
(both every layer: what the paper's additions cost) and each depth's time
per step over the first depth's. A distillation step also embeds its photo
crops, so its absolute rate is lower; the ratios are what this bench is
for. Figures: bench/RESULTS.md ("Model").
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
    "Depths the full model trains from, the reference of the time-per-step "
    "ratios first: backbone layer names (the first trainable one), 'none', "
    f"'{EVERY_LAYER}' or '{EVERY_LAYER_BUT_BATCHNORM}'. The bare model is "
    f"timed, for the full / bare ratio, only when {EVERY_LAYER} is named.",
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


def full_name(depth: str) -> str:
    return f"full {depth}"


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

    models, steps = {}, {}
    if EVERY_LAYER in depths:  # bare trains every layer: its one match
        bare = harness.bare_training_model(_BACKBONE.value, size, _NUM_CLASSES)
        models["bare"] = bare
        steps["bare"] = lambda: bare.train_on_batch(images, labels)
    for depth in depths:
        full = harness.full_training_model(
            _BACKBONE.value, size, _NUM_CLASSES, **trainable_settings(depth)
        )
        models[full_name(depth)] = full
        steps[full_name(depth)] = lambda full=full: full.train_on_batch(
            {"image": images, "label": labels},
            {"mask": masks, "logits": labels},
        )
    measured = harness.side_by_side(
        {
            name: lambda step=step: harness.rate(step, _STEPS.value)
            for name, step in steps.items()
        },
        _ROUNDS.value,
        warmup=True,  # tracing
    )
    reference = full_name(depths[0])
    rows = measured.rows("steps/s")
    for row in rows:
        name = row["contender"]
        row["median images/s"] = row["median steps/s"] * batch
        row["trainable weights"] = harness.trainable_weight_count(models[name])
        if name != "bare":
            # Time per step over the reference's: its rate over this one's.
            row["time per step / first depth"] = measured.ratio(reference, name)
    ratios = {
        f"time per step, {full_name(depth)} / {reference}": measured.ratio(
            reference, full_name(depth)
        )
        for depth in depths[1:]
    }
    if EVERY_LAYER in depths:
        ratios["full / bare"] = measured.ratio(full_name(EVERY_LAYER), "bare")
    print(
        f"\n{_BACKBONE.value} at {size} px, batch {batch}, "
        f"{_ROUNDS.value} rounds x {_STEPS.value} steps; "
        + ", ".join(f"{name} {value:.3f}" for name, value in ratios.items())
        + (
            " (full / bare: 1 = the paper's additions are free)"
            if "bare" in models
            else ""
        )
        + ":"
    )
    harness.print_table(
        rows,
        [
            "contender",
            "trainable weights",
            "median steps/s",
            "median images/s",
            "time per step / first depth",
        ],
    )
    harness.write_results(rows, variant=_BACKBONE.value, ratios=ratios)


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
