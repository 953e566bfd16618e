r"""Trains a beau_tf feature extractor on the catalogue (and optionally photos).

  python -m beau_tf.train --flagfile=configs/r50.flags \
      --catalog=catalog.csv --background_dir=backgrounds/ --workdir=runs/r50

Flagfiles compose (`configs/r50.flags` starts with `--flagfile=configs/base.flags`)
and later flags override earlier ones. Restarting the same command resumes from
the workdir's last checkpoint. See `beau_tf.training.config` for the workdir layout.

With --photos and --teacher (configs/distill.flags) it also learns from the
shop's unlabelled photos, against a teacher export's soft targets.

On N workers, each runs the same command with `--strategy=multi_worker` and its
own index (0 is the chief, which writes the workdir):

  TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]},
              "task": {"type": "worker", "index": 0}}' \
  python -m beau_tf.train --flagfile=configs/r50.flags --strategy=multi_worker ...
"""

import os
import sys

from absl import app
from absl import flags

from beau_tf.common import cli
from beau_tf.common import files
from beau_tf.data import products
from beau_tf.models import backbones
from beau_tf.models import extractor
from beau_tf.models import layers
from beau_tf.serving import contract
from beau_tf.training import config as config_lib
from beau_tf.training import trainer

_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Run folder (created; resumed when it holds a run).",
    required=True,
)
_CATALOG = flags.DEFINE_string(
    "catalog",
    None,
    "Catalogue: image folder (recursive) or CSV of item_id,path.",
    required=True,
)
_BACKGROUND_DIR = flags.DEFINE_string(
    "background_dir",
    "",
    "Background photos: a folder (recursive) or a CSV with a path column; "
    "procedural scenes when empty.",
)
_MAX_BACKGROUNDS = flags.DEFINE_integer(
    "max_backgrounds", 4000, "Background photos kept in memory at most."
)
_BAD_MASK_POLICY = flags.DEFINE_enum(
    "bad_mask_policy",
    "skip",
    products.BAD_MASK_POLICIES,
    "Catalogue images whose mask covers the whole frame: skip, or use the "
    "whole frame as the product.",
)

_BACKBONE = flags.DEFINE_enum(
    "backbone", "resnet50", sorted(backbones.BACKBONES), "CNN backbone."
)
_BACKBONE_WEIGHTS = flags.DEFINE_string(
    "backbone_weights",
    "imagenet",
    "imagenet (downloaded for resnet50; "
    "ported offline for efficientnet_lite*), none, or a weights file path.",
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Training image side.")
_POOLING = flags.DEFINE_enum(
    "pooling",
    "attention",
    list(layers.POOLING_NAMES),
    "Global pooling: "
    + "; ".join(f"{s.name} = {s.description}" for s in layers.POOLINGS.values())
    + ".",
)
_MASK_STRIDES = flags.DEFINE_list(
    "mask_strides", ["32"], "Backbone strides feeding the mask decoder."
)
_EMBEDDING_DIM = flags.DEFINE_integer(
    "embedding_dim", 0, "Projection size; 0 keeps the backbone's channels."
)
_TRAINABLE_FROM = flags.DEFINE_string(
    "trainable_from",
    "",
    "Backbone layer from which layers train; empty = "
    "all, 'none' = backbone frozen.",
)
_TRAIN_BATCHNORM = flags.DEFINE_boolean(
    "train_batchnorm",
    True,
    "Train the backbone's BatchNormalization layers where the layers around "
    "them train; --notrain_batchnorm keeps their gamma, beta and moving "
    "statistics as pretrained.",
)

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 20000, "Optimizer steps in total.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Peak rate.")
_LR_SCHEDULE = flags.DEFINE_enum(
    "lr_schedule",
    "cosine",
    list(config_lib.LR_SCHEDULES),
    "cosine (warm-up, then decay) or constant.",
)
_WARMUP_STEPS = flags.DEFINE_integer("warmup_steps", 500, "Warm-up steps.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 1e-4, "AdamW decay.")
_MASK_LOSS_WEIGHT = flags.DEFINE_float(
    "mask_loss_weight", 1.0, "Weight of the mask MSE (the paper)."
)
_IDENTITY_LOSS_WEIGHT = flags.DEFINE_float(
    "identity_loss_weight",
    0.0,
    "Weight of the ArcFace identity loss over "
    "catalogue products; 0 = off (the paper).",
)
_IDENTITY_MARGIN = flags.DEFINE_float(
    "identity_margin", 0.2, "ArcFace margin, radians."
)
_IDENTITY_SCALE = flags.DEFINE_float("identity_scale", 30.0, "ArcFace scale.")
_PHOTOS = flags.DEFINE_string(
    "photos",
    "",
    "Unlabelled in-domain photos (a folder, or a CSV with a path column) for "
    "the distillation loss; never photos you will evaluate on.",
)
_TEACHER = flags.DEFINE_string(
    "teacher",
    "",
    "An exported model version folder (python -m beau_tf.export; e.g. the "
    "adapted ensemble of configs/recommended.flags) whose embeddings label "
    "--photos.",
)
_PHOTO_LOSS_WEIGHT = flags.DEFINE_float(
    "photo_loss_weight",
    0.0,
    "Weight of the distillation loss on --photos; 0 = off (the paper).",
)
_PILE_PROBABILITY = flags.DEFINE_float(
    "pile_probability",
    0.0,
    "Chance that a catalogue scene shows a pile of copies of the product "
    "(fruit in a crate, cartons on a shelf) instead of one; the mask is every "
    "copy.",
)
_PHOTO_MASK_LOSS_WEIGHT = flags.DEFINE_float(
    "photo_mask_loss_weight",
    0.0,
    "Weight of the mask loss on --photos (self-supervised: the target is "
    "where the identity head, cell by cell, sees the product the teacher "
    "assigned the photo); 0 = off. Needs the distillation loss.",
)
_PHOTO_PHOTOMETRIC = flags.DEFINE_bool(
    "photo_photometric",
    False,
    "Give the --photos crops the catalogue scenes' colour and camera changes "
    "too (brightness, contrast, saturation, hue, colour cast, blur, noise, "
    "JPEG). Needs the distillation loss.",
)
_TEACHER_PER_VIEW = flags.DEFINE_bool(
    "teacher_per_view",
    False,
    "The teacher labels each of its query views of a photo (its zooms) on "
    "its own, and the student learns from those views, each with its own "
    "target, instead of random crops under the photo's one target. Needs "
    "the distillation loss.",
)
_TEACHER_TEMPERATURE = flags.DEFINE_float(
    "teacher_temperature",
    0.03,
    "Softness of the teacher's balanced product assignment (cosine units).",
)
_MAX_PHOTOS = flags.DEFINE_integer(
    "max_photos", 4000, "Distillation photos kept in memory at most."
)
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 500, "Steps between checkpoints (resumable points)."
)
_KEEP_CHECKPOINTS = flags.DEFINE_integer(
    "keep_checkpoints", 3, "Checkpoints kept."
)
_SUMMARY_EVERY = flags.DEFINE_integer(
    "summary_every", 50, "Steps between TensorBoard loss points."
)
_SUMMARY_IMAGES_EVERY = flags.DEFINE_integer(
    "summary_images_every", 500, "Steps between TensorBoard mask images."
)
_SEED = flags.DEFINE_integer("seed", 0, "Run seed.")
_STRATEGY = flags.DEFINE_enum(
    "strategy",
    "default",
    list(config_lib.STRATEGIES),
    "tf.distribute strategy: mirrored = the GPUs of this machine, "
    "multi_worker = several processes or machines described by TF_CONFIG "
    "(README), tpu = --tpu.",
)
_TPU = flags.DEFINE_string("tpu", "", "TPU address for --strategy=tpu.")
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision",
    "none",
    list(config_lib.MIXED_PRECISION),
    "mixed_float16 on GPUs, mixed_bfloat16 on TPUs.",
)


def config_from_flags() -> config_lib.TrainConfig:
    return config_lib.TrainConfig(
        extractor=extractor.ExtractorConfig(
            backbone=_BACKBONE.value,
            backbone_weights=_BACKBONE_WEIGHTS.value,
            image_size=_IMAGE_SIZE.value,
            pooling=_POOLING.value,
            mask_strides=tuple(int(s) for s in _MASK_STRIDES.value),
            embedding_dim=_EMBEDDING_DIM.value,
            trainable_from=_TRAINABLE_FROM.value,
            train_batchnorm=_TRAIN_BATCHNORM.value,
        ),
        catalog=_CATALOG.value,
        background_dir=_BACKGROUND_DIR.value,
        max_backgrounds=_MAX_BACKGROUNDS.value,
        bad_mask_policy=_BAD_MASK_POLICY.value,
        batch_size=_BATCH_SIZE.value,
        steps=_STEPS.value,
        learning_rate=_LEARNING_RATE.value,
        lr_schedule=_LR_SCHEDULE.value,
        warmup_steps=_WARMUP_STEPS.value,
        weight_decay=_WEIGHT_DECAY.value,
        mask_loss_weight=_MASK_LOSS_WEIGHT.value,
        identity_loss_weight=_IDENTITY_LOSS_WEIGHT.value,
        identity_margin=_IDENTITY_MARGIN.value,
        identity_scale=_IDENTITY_SCALE.value,
        photos=_PHOTOS.value,
        teacher=_TEACHER.value,
        photo_loss_weight=_PHOTO_LOSS_WEIGHT.value,
        photo_mask_loss_weight=_PHOTO_MASK_LOSS_WEIGHT.value,
        pile_probability=_PILE_PROBABILITY.value,
        photo_photometric=_PHOTO_PHOTOMETRIC.value,
        teacher_per_view=_TEACHER_PER_VIEW.value,
        teacher_temperature=_TEACHER_TEMPERATURE.value,
        max_photos=_MAX_PHOTOS.value,
        checkpoint_every=_CHECKPOINT_EVERY.value,
        keep_checkpoints=_KEEP_CHECKPOINTS.value,
        summary_every=_SUMMARY_EVERY.value,
        summary_images_every=_SUMMARY_IMAGES_EVERY.value,
        seed=_SEED.value,
        strategy=_STRATEGY.value,
        tpu=_TPU.value,
        mixed_precision=_MIXED_PRECISION.value,
    )


# What the GroceryStore flagfiles (configs/*.flags) read, and what writes it.
_GROCERY_DIR = "out/grocery"
_GROCERY_HINT = (
    "; the GroceryStore flagfiles read out/grocery/, which "
    "python -m beau_tf.convert_grocery --dataset_dir=<GroceryStore "
    "dataset folder> --out_dir=out/grocery writes (README, Training)"
)


def check_inputs_exist(config: config_lib.TrainConfig) -> None:
    """Raises FileNotFoundError naming a missing catalogue, background,
    photo or teacher source, with how to make the GroceryStore ones."""
    for flag, path in (
        ("--catalog", config.catalog),
        ("--background_dir", config.background_dir),
        ("--photos", config.photos),
        ("--teacher", config.teacher),
    ):
        if path and not os.path.exists(path):
            hint = _GROCERY_HINT if path.startswith(_GROCERY_DIR) else ""
            raise FileNotFoundError(f"{flag}={path} does not exist{hint}.")
    if config.teacher:
        contract.model_identity(config.teacher)  # an export's version folder


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags()
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    files.check_writable(_WORKDIR.value, "--workdir", folder=True)
    check_inputs_exist(config)
    own_flags = flags.FLAGS.get_flags_for_module(sys.modules[__name__])
    trainer.train(
        config,
        _WORKDIR.value,
        flags_text="".join(f"{flag.serialize()}\n" for flag in own_flags),
    )


if __name__ == "__main__":
    cli.run(main)
