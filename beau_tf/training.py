"""Trains the feature extractor on augmented catalogue products.

The mask decoder learns, with mean squared error against the augmentation's
masks, to find the product (salient-object detection without human labels);
optionally an identity loss treats every catalogue product as its own class.

A workdir holds everything a run needs and makes:

  <workdir>/train_config.json   the resolved configuration (export reads it)
  <workdir>/flags.txt           the command line's flags, for people
  <workdir>/checkpoints/        model + optimizer every `checkpoint_every` steps
  <workdir>/tensorboard/        losses, learning rate, input and mask images
  <workdir>/extractor.keras     the trained extractor, written at the end

Restarting the same command after a crash (even SIGKILL) resumes from the
last checkpoint: the step count goes on and at most one checkpoint interval
of work is lost.
"""

import dataclasses
import json
import os
import sys

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from beau_tf import files
from beau_tf.data import augment
from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import pipelines
from beau_tf.data import products as products_lib
from beau_tf.models import extractor as extractor_lib
from beau_tf.models import losses

CONFIG_FILE = "train_config.json"
EXTRACTOR_FILE = "extractor.keras"
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
LR_SCHEDULES = ("cosine", "constant")
# Settings a resumed run may change without invalidating its checkpoints.
_RESUMABLE_CHANGES = frozenset(
    {
        "steps",
        "strategy",
        "tpu",
        "summary_every",
        "summary_images_every",
        "keep_checkpoints",
    }
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the CLI's flags, resolved).

    Attributes:
      extractor: the model.
      catalog: catalogue folder or CSV (see `beau_tf.data.catalog`).
      background_dir: background photos; procedural scenes when empty.
      max_backgrounds: at most this many background photos kept in memory.
      bad_mask_policy: "skip" or "full_frame" (see `beau_tf.data.products`).
      batch_size: global batch size (split across replicas).
      steps: total optimizer steps; a multiple of `checkpoint_every`.
      learning_rate: peak learning rate (AdamW).
      lr_schedule: "cosine" (linear warm-up, cosine decay to 0) or "constant".
      warmup_steps: warm-up length for the cosine schedule.
      weight_decay: AdamW's decoupled weight decay.
      mask_loss_weight: weight of the mask MSE (the paper's loss).
      identity_loss_weight: weight of the cosine-margin identity loss; 0 turns
        it off (the paper-faithful setting).
      identity_margin, identity_scale: ArcFace margin (radians) and scale.
      checkpoint_every: steps between checkpoints.
      keep_checkpoints: checkpoints kept on disk.
      summary_every: steps between TensorBoard loss and learning-rate points.
      summary_images_every: steps between TensorBoard image summaries.
      seed: seeds data order, augmentation and initialisation.
      strategy: tf.distribute strategy (default, mirrored, multi_worker with
        TF_CONFIG, tpu).
      tpu: TPU address for the tpu strategy ("" = local / from the environment).
      mixed_precision: "none", "mixed_float16" (GPU) or "mixed_bfloat16" (TPU).
    """

    extractor: extractor_lib.ExtractorConfig
    catalog: str
    background_dir: str = ""
    max_backgrounds: int = 4000
    bad_mask_policy: str = "skip"
    batch_size: int = 32
    steps: int = 20000
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 500
    weight_decay: float = 1e-4
    mask_loss_weight: float = 1.0
    identity_loss_weight: float = 0.0
    identity_margin: float = 0.2
    identity_scale: float = 30.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    summary_every: int = 50
    summary_images_every: int = 500
    seed: int = 0
    strategy: str = "default"
    tpu: str = ""
    mixed_precision: str = "none"

    def __post_init__(self):
        for name in (
            "batch_size",
            "steps",
            "checkpoint_every",
            "keep_checkpoints",
            "summary_every",
            "summary_images_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name}={getattr(self, name)}; at least 1 expected."
                )
        if self.steps % self.checkpoint_every:
            raise ValueError(
                f"steps={self.steps} is not a multiple of checkpoint_every="
                f"{self.checkpoint_every}; make it one (checkpoints mark the "
                "resumable points of a run)."
            )
        for name, allowed in (
            ("strategy", STRATEGIES),
            ("mixed_precision", MIXED_PRECISION),
            ("lr_schedule", LR_SCHEDULES),
            ("bad_mask_policy", products_lib.BAD_MASK_POLICIES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(self, name)!r}; one of {allowed} "
                    "expected."
                )
        if self.mask_loss_weight < 0 or self.identity_loss_weight < 0:
            raise ValueError("Loss weights must be >= 0.")
        if self.mask_loss_weight == 0 and self.identity_loss_weight == 0:
            raise ValueError("Both loss weights are 0: nothing to train.")

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["extractor"] = self.extractor.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        values["extractor"] = extractor_lib.ExtractorConfig.from_dict(
            values["extractor"]
        )
        return cls(**values)


def write_json_atomically(path: str, value: dict) -> None:
    """Writes JSON so that readers see the old file or the new, never half."""
    with files.atomic_path(path) as temporary:
        with open(temporary, "w") as stream:
            json.dump(value, stream, indent=2, sort_keys=True)


def load_train_config(workdir: str) -> TrainConfig:
    """The configuration a workdir was trained with."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {workdir} is not a beau_tf training workdir "
            "(python -m beau_tf.train writes it)."
        )
    with open(path) as stream:
        return TrainConfig.from_dict(json.load(stream))


def record_config(workdir: str, config: TrainConfig, flags_text: str) -> None:
    """Writes the run's configuration, refusing to mix two runs in one workdir.

    Raises:
      ValueError: the workdir holds a run with other settings (other than the
        ones a resumed run may change, such as `steps`).
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(path):
        previous = load_train_config(workdir).to_dict()
        current = config.to_dict()
        changed = sorted(
            key
            for key in current
            if current[key] != previous.get(key)
            and key not in _RESUMABLE_CHANGES
        )
        if changed:
            details = ", ".join(
                f"{key}: {previous.get(key)!r} -> {current[key]!r}"
                for key in changed
            )
            raise ValueError(
                f"{workdir} holds a run with other settings ({details}). Use a new "
                "--workdir, or the same flags to resume."
            )
    write_json_atomically(path, config.to_dict())
    with open(os.path.join(workdir, "flags.txt"), "w") as stream:
        stream.write(flags_text)


def build_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The tf.distribute strategy named by `--strategy`."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # Reads the cluster from the TF_CONFIG environment variable.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"strategy={name!r}; one of {STRATEGIES} expected.")


def build_learning_rate(config: TrainConfig):
    """A float (constant) or a warm-up + cosine-decay schedule."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    warmup = min(config.warmup_steps, config.steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=config.steps - warmup,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )


def to_fit_inputs(example: dict[str, tf.Tensor], identity: bool):
    """Selects what `fit` needs: `({"image", "label"}, {"mask"[, "logits"]})`.

    The identity loss's target is the catalogue label; without that loss the
    training model has no "logits" output, so the target must not have one.
    """
    targets = {"mask": example["mask"]}
    if identity:
        targets["logits"] = example["label"]
    return {"image": example["image"], "label": example["label"]}, targets


def load_training_data(
    config: TrainConfig,
    items: list[catalog_lib.CatalogItem],
    start_step: int = 0,
) -> tuple[tf.data.Dataset, dict]:
    """The endless training dataset for `fit` and a sample batch.

    Catalogue images are decoded and masked once here. A resumed run starts
    the augmentation stream at `start_step`, so it sees new pairs rather than
    replaying the first ones.

    Returns:
      `(dataset for fit, first batch of training elements as numpy)`.
    """
    image_size = config.extractor.image_size
    products, _ = products_lib.prepare_products(
        items, image_size, bad_mask_policy=config.bad_mask_policy
    )
    backgrounds = None
    if config.background_dir:
        backgrounds, _ = backgrounds_lib.load_backgrounds(
            config.background_dir,
            backgrounds_lib.stored_size(image_size),
            max_count=config.max_backgrounds,
            seed=config.seed,
        )
    dataset = pipelines.make_train_dataset(
        products,
        augment.AugmentConfig(image_size=image_size),
        config.batch_size,
        seed=config.seed,
        backgrounds=backgrounds,
        start_index=start_step * config.batch_size,
    )
    sample = tf.nest.map_structure(np.asarray, next(iter(dataset.take(1))))
    identity = config.identity_loss_weight > 0
    return dataset.map(lambda example: to_fit_inputs(example, identity)), sample


class CheckpointEveryInterval(keras.callbacks.Callback):
    """Saves model + optimizer at the end of each `fit` epoch (= interval)."""

    def __init__(self, manager: tf.train.CheckpointManager, optimizer):
        super().__init__()
        self._manager = manager
        self._optimizer = optimizer

    def on_epoch_end(self, epoch, logs=None):
        step = int(self._optimizer.iterations.numpy())
        path = self._manager.save(checkpoint_number=step)
        logging.info("Checkpoint at step %d: %s", step, path)


class TensorBoardSummaries(keras.callbacks.Callback):
    """Losses, learning rate, and input / true / predicted mask images.

    Written with the step as x-axis: scalars every `scalars_every` steps,
    images of a fixed sample batch every `images_every` steps.
    """

    def __init__(
        self,
        log_dir: str,
        extractor: keras.Model,
        sample: dict,
        optimizer,
        scalars_every: int,
        images_every: int,
        max_images: int = 4,
    ):
        super().__init__()
        self._writer = tf.summary.create_file_writer(log_dir)
        self._extractor = extractor
        self._images = sample["image"][:max_images]
        self._masks = sample["mask"][:max_images]
        self._optimizer = optimizer
        self._scalars_every = scalars_every
        self._images_every = images_every

    def on_train_batch_end(self, batch, logs=None):
        step = int(self._optimizer.iterations.numpy())
        write_scalars = step % self._scalars_every == 0
        write_images = step % self._images_every == 0
        if not (write_scalars or write_images):
            return
        # record_if(True): other callbacks may leave a recording condition set.
        with self._writer.as_default(step=step), tf.summary.record_if(True):
            if write_scalars:
                for name, value in (logs or {}).items():
                    tf.summary.scalar(f"loss/{name}", value)
                tf.summary.scalar(
                    "learning_rate", self._optimizer.learning_rate
                )
            if write_images:
                predicted = self._extractor(self._images, training=False)[
                    "mask"
                ]
                count = len(self._images)
                tf.summary.image("input", self._images, max_outputs=count)
                tf.summary.image("mask/true", self._masks, max_outputs=count)
                tf.summary.image("mask/predicted", predicted, max_outputs=count)
        self._writer.flush()


def build_models(config: TrainConfig, num_classes: int):
    """The extractor, the compiled training model and its optimizer."""
    extractor = extractor_lib.build_extractor(config.extractor)
    identity = config.identity_loss_weight > 0
    model = extractor_lib.build_training_model(
        extractor,
        num_classes=num_classes if identity else 0,
        identity_margin=config.identity_margin,
        identity_scale=config.identity_scale,
    )
    loss = {"mask": losses.mask_mse}
    loss_weights = {"mask": config.mask_loss_weight}
    if identity:
        loss["logits"] = losses.build_identity_loss()
        loss_weights["logits"] = config.identity_loss_weight
    optimizer = keras.optimizers.AdamW(
        learning_rate=build_learning_rate(config),
        weight_decay=config.weight_decay,
        global_clipnorm=1.0,
    )
    model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights)
    # compile may wrap the optimizer (loss scaling under mixed_float16).
    return extractor, model, model.optimizer


def train(config: TrainConfig, workdir: str, flags_text: str = "") -> str:
    """Trains (or resumes) a run in `workdir`; returns the extractor's path."""
    items = catalog_lib.list_catalog(config.catalog)  # fails before writing
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    strategy = build_strategy(config.strategy, config.tpu)

    with strategy.scope():
        extractor, model, optimizer = build_models(config, len(items))
        # Recorded once the model builds (weights found), so a failed start
        # leaves no workdir behind that would refuse other settings.
        record_config(workdir, config, flags_text)
        optimizer.build(model.trainable_variables)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(
            checkpoint,
            os.path.join(workdir, "checkpoints"),
            max_to_keep=config.keep_checkpoints,
        )
        if manager.latest_checkpoint:
            checkpoint.restore(
                manager.latest_checkpoint
            ).assert_existing_objects_matched()
    start_step = int(optimizer.iterations.numpy())
    if start_step:
        logging.info(
            "Resuming from %s at step %d.",
            manager.latest_checkpoint,
            start_step,
        )
    if start_step >= config.steps:
        logging.info("Already trained for %d steps.", start_step)
    else:
        dataset, sample = load_training_data(config, items, start_step)
        callbacks = [
            CheckpointEveryInterval(manager, optimizer),
            TensorBoardSummaries(
                os.path.join(workdir, "tensorboard"),
                extractor,
                sample,
                optimizer,
                config.summary_every,
                config.summary_images_every,
            ),
        ]
        model.fit(
            dataset,
            epochs=config.steps // config.checkpoint_every,
            initial_epoch=start_step // config.checkpoint_every,
            steps_per_epoch=config.checkpoint_every,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,
        )
        logging.info("Trained to step %d.", int(optimizer.iterations.numpy()))
    return save_extractor(extractor, workdir)


def save_extractor(extractor: keras.Model, workdir: str) -> str:
    """Saves the extractor as `.keras`, atomically."""
    path = os.path.join(workdir, EXTRACTOR_FILE)
    with files.atomic_path(path, ".keras") as temporary:
        extractor.save(temporary)
    logging.info("Saved the extractor to %s", path)
    return path
