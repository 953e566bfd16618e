"""A training run's configuration, and the workdir files that record it.

A workdir holds everything a run needs and makes:

  <workdir>/train_config.json   the resolved configuration (export reads it)
  <workdir>/flags.txt           the command line's flags, for people
  <workdir>/checkpoints/        model + optimizer every `checkpoint_every` steps
  <workdir>/tensorboard/        losses, learning rate, input and mask images
  <workdir>/photo_targets.npz   the teacher's targets for the distillation
                                photos (only with `photo_loss_weight` > 0)
  <workdir>/extractor.keras     the trained extractor, written at the end

Under `--strategy=multi_worker` only the chief writes these; another worker
writes into `<workdir>/worker<N>_temp/` while it runs and removes it
(`beau_tf.training.distribute`).
"""

import dataclasses
import json
import os

from beau_tf.common import files
from beau_tf.data import products as products_lib
from beau_tf.models import extractor as extractor_lib

CONFIG_FILE = "train_config.json"
EXTRACTOR_FILE = "extractor.keras"
CHECKPOINT_DIR = "checkpoints"
# What tf.train.CheckpointManager writes with the first checkpoint.
CHECKPOINT_STATE_FILE = "checkpoint"
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
      photos: unlabelled in-domain photos (folder or CSV with a path column)
        for the distillation loss; never photos that will be scored.
      teacher: an exported model version folder (`python -m beau_tf.export`)
        whose embeddings give each photo soft product targets.
      photo_loss_weight: weight of the distillation loss (cross-entropy of
        the identity head's logits on the photos against the teacher's
        targets); 0 turns it off. Needs `photos` and `teacher`.
      pile_probability: chance that a catalogue scene shows a pile of
        copies of the product instead of one (`augment.pile`).
      photo_mask_loss_weight: weight of the mask loss on the photos
        (`losses.photo_mask_mse`: the decoder learns where the head sees the
        teacher's product, cell by cell); 0 turns it off. Needs the
        distillation loss.
      photo_photometric: the catalogue scenes' colour and camera changes
        (`augment.jitter_colour`, `augment.degrade`) on the photo crops too.
        Needs the distillation loss.
      teacher_per_view: the teacher labels each of its query views of a
        photo (its zooms) on its own, and the student sees those views,
        each with its target (`photo_targets`), instead of random crops
        under the photo's one target. Needs the distillation loss.
      teacher_temperature: softness of the teacher's balanced assignment
        (cosine units; see `beau_tf.adaptation.self_training.assign`).
      max_photos: at most this many photos kept in memory.
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
    photos: str = ""
    teacher: str = ""
    photo_loss_weight: float = 0.0
    photo_mask_loss_weight: float = 0.0
    pile_probability: float = 0.0
    photo_photometric: bool = False
    teacher_per_view: bool = False
    teacher_temperature: float = 0.03
    max_photos: int = 4000
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
            "max_photos",
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
        weights = (
            self.mask_loss_weight,
            self.identity_loss_weight,
            self.photo_loss_weight,
        )
        if min(weights) < 0:
            raise ValueError("Loss weights must be >= 0.")
        if max(weights) == 0:
            raise ValueError("Every loss weight is 0: nothing to train.")
        distilling = self.photo_loss_weight > 0
        if distilling != bool(self.photos) or distilling != bool(self.teacher):
            raise ValueError(
                f"photo_loss_weight={self.photo_loss_weight}, photos="
                f"{self.photos!r}, teacher={self.teacher!r}: the distillation "
                "loss needs all three (a weight > 0, the unlabelled photos and "
                "the teacher export), or none."
            )
        if not 0.0 <= self.pile_probability <= 1.0:
            raise ValueError(
                f"pile_probability={self.pile_probability}; a probability in "
                "[0, 1] expected."
            )
        if self.photo_mask_loss_weight < 0:
            raise ValueError("Loss weights must be >= 0.")
        if self.photo_mask_loss_weight > 0 and not distilling:
            raise ValueError(
                f"photo_mask_loss_weight={self.photo_mask_loss_weight} needs "
                "the distillation loss (photo_loss_weight > 0, photos and a "
                "teacher): the teacher's targets say which product to look "
                "for in each photo."
            )
        for name in ("photo_photometric", "teacher_per_view"):
            if getattr(self, name) and not distilling:
                raise ValueError(
                    f"{name}=True needs the distillation loss "
                    "(photo_loss_weight > 0, photos and a teacher): it "
                    "changes the photos that loss reads."
                )
        if self.teacher_temperature <= 0:
            raise ValueError(
                f"teacher_temperature={self.teacher_temperature}; > 0 expected."
            )

    @property
    def distills(self) -> bool:
        """Whether the run has the distillation loss on unlabelled photos."""
        return self.photo_loss_weight > 0

    @property
    def learns_photo_masks(self) -> bool:
        """Whether the mask decoder also learns from the unlabelled photos."""
        return self.photo_mask_loss_weight > 0

    @property
    def has_identity_head(self) -> bool:
        """The identity head scores sprites (identity loss) and photos
        (distillation loss) against the same product weights."""
        return self.identity_loss_weight > 0 or self.distills

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


def check_same_run(workdir: str, config: TrainConfig) -> None:
    """Refuses to mix two runs in one workdir.

    Raises:
      ValueError: the workdir holds a run with other settings (other than the
        ones a resumed run may change, such as `steps`).
    """
    if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
        return
    previous = load_train_config(workdir).to_dict()
    current = config.to_dict()
    changed = sorted(
        key
        for key in current
        if current[key] != previous.get(key) and key not in _RESUMABLE_CHANGES
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


def has_started(workdir: str) -> bool:
    """Whether the run in `workdir` saved a checkpoint or its extractor, so
    that another run's settings would spoil what it holds."""
    return os.path.exists(
        os.path.join(workdir, CHECKPOINT_DIR, CHECKPOINT_STATE_FILE)
    ) or os.path.exists(os.path.join(workdir, EXTRACTOR_FILE))


def record_config(workdir: str, config: TrainConfig, flags_text: str) -> None:
    """Writes the run's configuration, refusing to mix two runs in one workdir.

    A run that stopped before its first checkpoint (its inputs failed a
    check, say) left nothing to resume: its settings are replaced, so the
    corrected command runs.

    Raises:
      ValueError: the workdir holds a started run with other settings (see
        `check_same_run`).
    """
    if has_started(workdir):
        check_same_run(workdir, config)
    os.makedirs(workdir, exist_ok=True)
    files.write_json_atomically(
        os.path.join(workdir, CONFIG_FILE), config.to_dict()
    )
    with files.atomic_path(os.path.join(workdir, "flags.txt")) as temporary:
        with open(temporary, "w") as stream:
            stream.write(flags_text)
