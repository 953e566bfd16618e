"""Trains the feature extractor on augmented catalogue products.

The mask decoder learns, with mean squared error against the augmentation's
masks, to find the product (salient-object detection without human labels);
optionally an identity loss treats every catalogue product as its own class,
and a distillation loss has the same identity head match a teacher export's
soft targets on unlabelled in-domain photos (`photo_targets`; one batch of
photos beside each batch of catalogue scenes).
The workdir's files are described in `beau_tf.training.config`.

Restarting the same command after a crash (even SIGKILL) resumes from the
last checkpoint: the step count goes on and at most one checkpoint interval
of work is lost. Under `--strategy=multi_worker` every worker runs `train`
and resumes from the chief's checkpoints (`beau_tf.training.distribute`).
"""

import os
import shutil

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from beau_tf.common import files
from beau_tf.common import progress
from beau_tf.data import augment
from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import pipelines
from beau_tf.data import products as products_lib
from beau_tf.models import extractor as extractor_lib
from beau_tf.models import losses
from beau_tf.training import config as config_lib
from beau_tf.training import distribute
from beau_tf.training import photo_targets
from beau_tf.training import workdir as workdir_lib

# Training examples shown in TensorBoard (input, true and predicted masks).
SUMMARY_IMAGES = 4


def build_learning_rate(config: config_lib.TrainConfig):
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


def to_fit_inputs(
    example: dict[str, tf.Tensor],
    identity: bool,
    photos: dict[str, tf.Tensor] | None = None,
    photo_masks: bool = False,
):
    """Selects what `fit` needs: `({"image", "label"[, "photo"]}, {"mask"[,
    "logits"][, "photo_logits"][, "photo_mask"]})`.

    The identity loss's target is the catalogue label; without that loss the
    training model has no "logits" output, so the target must not have one.
    `photos` (a batch of `pipelines.make_photo_dataset`) adds the unlabelled
    photos and their soft targets, the distillation loss's; with
    `photo_masks` the same targets are the photo mask loss's too.
    """
    inputs = {"image": example["image"], "label": example["label"]}
    targets = {"mask": example["mask"]}
    if identity:
        targets["logits"] = example["label"]
    if photos is not None:
        inputs["photo"] = photos["photo"]
        targets["photo_logits"] = photos["target"]
        if photo_masks:
            targets["photo_mask"] = photos["target"]
    return inputs, targets


def load_photos(
    config: config_lib.TrainConfig,
    items: list[catalog_lib.CatalogItem],
    output_dir: str,
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """The distillation loss's photos `(N, H, W, 3)`, soft targets `(N, K)`
    (`(N, Z, K)` per view) and the views' zooms (empty unless per view):
    the teacher labels them once (`photo_targets`), then they are decoded
    into memory (at most `config.max_photos`, a seeded subset)."""
    paths = backgrounds_lib.seeded_subset(
        catalog_lib.list_photos(config.photos), config.max_photos, config.seed
    )
    targets, labelled, zooms = photo_targets.load_or_make(
        output_dir,
        config.teacher,
        [item.path for item in items],
        paths,
        config.teacher_temperature,
        per_view=config.teacher_per_view,
    )
    photos, kept, _ = backgrounds_lib.load_photos(
        labelled,
        backgrounds_lib.stored_size(config.extractor.image_size),
        "unlabelled photos",
    )
    if not kept:
        raise ValueError(f"No usable photo in {config.photos}.")
    row = {path: i for i, path in enumerate(labelled)}
    return photos, targets[[row[path] for path in kept]], zooms


def load_training_data(
    config: config_lib.TrainConfig,
    items: list[catalog_lib.CatalogItem],
    start_step: int = 0,
    photos: tuple[np.ndarray, np.ndarray, tuple[float, ...]] | None = None,
) -> tuple[tf.data.Dataset, dict]:
    """The endless training dataset for `fit` and examples for TensorBoard.

    Catalogue images are decoded and masked once here. A resumed run starts
    the augmentation stream at `start_step`, where an uninterrupted run would
    be. `photos`: `(photos, targets, zooms)` of `load_photos` for the
    distillation loss, one batch of them beside each batch of catalogue
    images.

    Returns:
      `(dataset for fit, a batch of `SUMMARY_IMAGES` training elements of the
      first products, as numpy)`.
    """
    image_size = config.extractor.image_size
    augment_config = augment.AugmentConfig(
        image_size=image_size, pile_probability=config.pile_probability
    )
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
        augment_config,
        config.batch_size,
        seed=config.seed,
        backgrounds=backgrounds,
        start_index=start_step * config.batch_size,
    )
    # The sample has a pipeline of its own: an iterator over `dataset` would
    # move on the shuffle state its later iterators share, by as much as
    # prefetching got to, and `fit` would see another order in every run.
    first = slice(0, SUMMARY_IMAGES)
    sample_dataset = pipelines.make_train_dataset(
        products_lib.ProductSet(
            products.sprites[first],
            products.labels[first],
            products.item_ids[first],
        ),
        augment_config,
        SUMMARY_IMAGES,
        seed=config.seed,
        backgrounds=None if backgrounds is None else backgrounds[first],
    )
    sample = tf.nest.map_structure(np.asarray, next(iter(sample_dataset)))
    identity = config.identity_loss_weight > 0
    if photos is None:
        dataset = dataset.map(lambda example: to_fit_inputs(example, identity))
    else:
        photo_images, targets, zooms = photos
        photo_dataset = pipelines.make_photo_dataset(
            photo_images,
            targets,
            image_size,
            config.batch_size,
            seed=config.seed,
            start_index=start_step * config.batch_size,
            photometric=augment_config if config.photo_photometric else None,
            zooms=zooms,
        )
        dataset = tf.data.Dataset.zip(dataset, photo_dataset).map(
            lambda example, batch: to_fit_inputs(
                example, identity, batch, config.learns_photo_masks
            )
        )
    # Under multi_worker, every worker makes this stream and keeps its share
    # of each global batch (AUTO would look for files to shard, then warn).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options), sample


def remove_unfinished_checkpoints(checkpoint_dir: str) -> None:
    """Removes the `ckpt-N_temp` folders a save interrupted mid-way leaves.

    TensorFlow writes a checkpoint into `<prefix>_temp/` and then moves it
    into place; a run killed in between leaves that folder, which resuming
    never reads. Removing it at start keeps the workdir to finished
    checkpoints only.
    """
    if not os.path.isdir(checkpoint_dir):
        return
    for name in os.listdir(checkpoint_dir):
        path = os.path.join(checkpoint_dir, name)
        if name.endswith("_temp") and os.path.isdir(path):
            logging.info("Removing the unfinished checkpoint %s.", path)
            shutil.rmtree(path)


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


class TrainingProgress(keras.callbacks.Callback):
    """Steps done of the whole run, with rate, ETA and the loss.

    A bar on a terminal, a log line every `log_every_seconds` otherwise
    (`beau_tf.common.progress`); replaces Keras's per-epoch bar, whose
    epochs are only checkpoint intervals.
    """

    def __init__(self, total_steps: int, optimizer, log_every_seconds=30.0):
        super().__init__()
        self._total_steps = total_steps
        self._optimizer = optimizer
        self._log_every_seconds = log_every_seconds
        self._progress = None

    def on_train_begin(self, logs=None):
        self._progress = progress.Progress(
            self._total_steps,
            "Training",
            unit="steps",
            initial=int(self._optimizer.iterations.numpy()),
            log_every_seconds=self._log_every_seconds,
        )

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        self._progress.update(
            1, postfix="" if loss is None else f"loss={float(loss):.4g}"
        )

    def on_train_end(self, logs=None):
        self._progress.close()


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
    ):
        super().__init__()
        self._writer = tf.summary.create_file_writer(log_dir)
        self._extractor = extractor
        self._images = sample["image"]
        self._masks = sample["mask"]
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

    def on_train_end(self, logs=None):
        self._writer.close()


def build_models(config: config_lib.TrainConfig, num_classes: int):
    """The extractor, the compiled training model and its optimizer."""
    extractor = extractor_lib.build_extractor(config.extractor)
    identity = config.identity_loss_weight > 0
    model = extractor_lib.build_training_model(
        extractor,
        num_classes=num_classes if config.has_identity_head else 0,
        identity_margin=config.identity_margin,
        identity_scale=config.identity_scale,
        identity_logits=identity,
        photo_logits=config.distills,
        photo_masks=config.learns_photo_masks,
    )
    loss = {"mask": losses.mask_mse}
    loss_weights = {"mask": config.mask_loss_weight}
    if identity:
        loss["logits"] = losses.build_identity_loss()
        loss_weights["logits"] = config.identity_loss_weight
    if config.distills:
        loss["photo_logits"] = losses.build_distillation_loss()
        loss_weights["photo_logits"] = config.photo_loss_weight
    if config.learns_photo_masks:
        loss["photo_mask"] = losses.photo_mask_mse
        loss_weights["photo_mask"] = config.photo_mask_loss_weight
    optimizer = keras.optimizers.AdamW(
        learning_rate=build_learning_rate(config),
        weight_decay=config.weight_decay,
        global_clipnorm=1.0,
    )
    model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights)
    # compile may wrap the optimizer (loss scaling under mixed_float16).
    return extractor, model, model.optimizer


def train(
    config: config_lib.TrainConfig, workdir: str, flags_text: str = ""
) -> str:
    """Trains (or resumes) a run in `workdir`; returns the extractor's path.

    Under `--strategy=multi_worker` every worker calls this with the same
    arguments; only the chief writes into `workdir`, and every worker returns
    the path of the chief's extractor.
    """
    items = catalog_lib.list_catalog(config.catalog)  # fails before writing
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    strategy = distribute.build_strategy(config.strategy, config.tpu)
    chief = distribute.is_chief(strategy)
    checkpoint_dir = os.path.join(workdir, "checkpoints")

    with strategy.scope():
        extractor, model, optimizer = build_models(config, len(items))
        # Recorded once the model builds (weights found), so a failed start
        # leaves no workdir behind that would refuse other settings.
        if chief:
            config_lib.record_config(workdir, config, flags_text)
            remove_unfinished_checkpoints(checkpoint_dir)
        else:
            config_lib.check_same_run(workdir, config)
        optimizer.build(model.trainable_variables)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        # Every worker resumes from the chief's checkpoints.
        latest = tf.train.latest_checkpoint(checkpoint_dir)
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
    start_step = int(optimizer.iterations.numpy())
    if start_step:
        logging.info("Resuming from %s at step %d.", latest, start_step)

    with distribute.output_dir(workdir, strategy) as output_dir:
        if start_step >= config.steps:
            logging.info("Already trained for %d steps.", start_step)
        else:
            fit(
                config,
                items,
                extractor,
                model,
                checkpoint,
                output_dir,
                start_step,
            )
        save_extractor(extractor, output_dir)
    return workdir_lib.extractor_path(workdir)


def fit(
    config: config_lib.TrainConfig,
    items: list[catalog_lib.CatalogItem],
    extractor: keras.Model,
    model: keras.Model,
    checkpoint: tf.train.Checkpoint,
    output_dir: str,
    start_step: int,
) -> None:
    """Trains from `start_step` to `config.steps`, writing into `output_dir`.

    Checkpoints (every `config.checkpoint_every` steps) go to
    `<output_dir>/checkpoints`, TensorBoard events to
    `<output_dir>/tensorboard`.
    """
    optimizer = model.optimizer
    manager = tf.train.CheckpointManager(
        checkpoint,
        os.path.join(output_dir, "checkpoints"),
        max_to_keep=config.keep_checkpoints,
    )
    photos = None
    if config.distills:
        # Another worker labels into its own temporary folder: the same
        # teacher gives it the same targets.
        photos = load_photos(config, items, output_dir)
    dataset, sample = load_training_data(config, items, start_step, photos)
    callbacks = [
        TrainingProgress(config.steps, optimizer),
        CheckpointEveryInterval(manager, optimizer),
        TensorBoardSummaries(
            os.path.join(output_dir, "tensorboard"),
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
        verbose=0,  # TrainingProgress reports
        shuffle=False,
    )
    logging.info("Trained to step %d.", int(optimizer.iterations.numpy()))


def save_extractor(extractor: keras.Model, workdir: str) -> str:
    """Saves the extractor as `.keras`, atomically."""
    path = workdir_lib.extractor_path(workdir)
    with files.atomic_path(path, ".keras") as temporary:
        extractor.save(temporary)
    logging.info("Saved the extractor to %s", path)
    return path
