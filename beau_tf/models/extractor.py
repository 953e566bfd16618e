"""The feature extractor of the paper, and the model that trains it.

`build_extractor(config)` wires a backbone (`backbones`) to the layers of
`layers`:

    image (B, S, S, 3) -> backbone -> {"stride_8", "stride_16", "stride_32"}
      mask_decoder(features at config.mask_strides)      -> mask (B, S, S, 1)
      pooling(stride_32 features [, mask])                -> (B, C32)
      projection (Dense, when embedding_dim > 0)          -> (B, D)
      embedding (L2Normalize)                             -> embedding (B, D)

The mask decoder exists in every configuration, since it is always trained
with `losses.mask_mse`; only a pooling whose `layers.POOLINGS` entry takes the
mask ("attention", the paper's) weights the pooled features by the predicted
mask, the baselines ("gap", "gem", "mac", ...) ignore it.

`build_training_model(extractor, num_classes)` adds the identity head
(`CosineMarginClassifier`, one class per catalogue product) and exposes what
the losses need. Compile and fit it like this (checked by the tests):

    model = build_training_model(extractor, num_classes=K)
    model.compile(
        optimizer="adam",
        loss={"mask": losses.mask_mse, "logits": losses.build_identity_loss()},
        loss_weights={"mask": 1.0, "logits": 0.1},
    )
    model.fit(dataset)

where every element of `dataset` is a pair `(inputs, targets)` of dicts:

    inputs  = {"image": (B, S, S, 3) uint8 or float32 pixels in [0, 255],
               "label": (B,) int32 product index in [0, K)}
    targets = {"mask":   (B, S, S, 1) or (B, S, S) float32 in {0, 1} (any
                         size; mask_mse resizes it to S x S),
               "logits": (B,) int32, the same labels again}

With num_classes=0 the model has the "mask" output only: compile with
`loss={"mask": losses.mask_mse}` and drop "logits" from the targets (the
"label" input stays, unused, so one dataset serves both).
"""

import dataclasses
import os
from collections.abc import Mapping, Sequence

import keras

from beau_tf.models import backbones
from beau_tf.models import layers

_WEIGHTS_KEYWORDS = ("imagenet", "none")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class ExtractorConfig:
    """Everything `build_extractor` needs; JSON-able via `to_dict`/`from_dict`.

    Values are validated on construction, so a bad flag fails before any model
    is built.

    Attributes:
        backbone: A key of `backbones.BACKBONES`.
        backbone_weights: "imagenet", "none" (random init) or the path of a
            weights file (see `backbones.build_backbone`). None means "none".
        image_size: Side S of the square input images, >= 32.
        pooling: A key of `layers.POOLINGS`, e.g. "attention" (mask-weighted,
            the paper) or "gap".
        mask_strides: Backbone strides whose features feed the mask decoder,
            e.g. (32,) or (8, 16, 32); each must be one of the backbone's.
        embedding_dim: 0 keeps the backbone's stride-32 channels as the
            embedding size; D > 0 adds a Dense projection to D.
        trainable_from: First trainable backbone layer (see
            `backbones.set_trainable_from`): "" trains all, "none" freezes all.
        train_batchnorm: False keeps every backbone BatchNormalization layer
            as pretrained (gamma, beta and moving statistics), even in the
            trainable part.
    """

    backbone: str = "resnet50"
    backbone_weights: str = "imagenet"
    image_size: int = 224
    pooling: str = "attention"
    mask_strides: tuple[int, ...] = (32,)
    embedding_dim: int = 0
    trainable_from: str = ""
    train_batchnorm: bool = True

    def __post_init__(self):
        spec = backbones.get_spec(self.backbone)
        weights = self.backbone_weights
        if weights is None:
            weights = "none"
        if isinstance(weights, os.PathLike):
            weights = os.fspath(weights)
        if not isinstance(weights, str) or not weights:
            raise ValueError(
                f"backbone_weights={self.backbone_weights!r} is invalid; expected "
                "'imagenet', 'none' or the path of a weights file."
            )
        if weights == "imagenet" and not spec.has_imagenet_weights:
            raise ValueError(
                f"backbone_weights='imagenet' is unavailable for backbone="
                f"{self.backbone!r}; use 'none' or the path of a weights file."
            )
        object.__setattr__(self, "backbone_weights", weights)

        if not _is_int(self.image_size) or self.image_size < 32:
            raise ValueError(
                f"image_size={self.image_size!r} is invalid; expected an int >= 32, "
                f"e.g. {spec.default_image_size} for {self.backbone}."
            )
        layers.get_pooling_spec(self.pooling)
        strides = self.mask_strides
        if (
            isinstance(strides, int)
            or not isinstance(strides, Sequence)
            or not strides
        ):
            raise ValueError(
                f"mask_strides={strides!r} is invalid; expected a non-empty "
                f"sequence of strides out of {sorted(spec.feature_layers)}."
            )
        for stride in strides:
            if stride not in spec.feature_layers:
                raise ValueError(
                    f"mask stride {stride!r} (mask_strides={tuple(strides)!r}) is "
                    f"not a feature stride of {self.backbone}; use some of "
                    f"{sorted(spec.feature_layers)}."
                )
        if len(set(strides)) != len(strides):
            raise ValueError(
                f"mask_strides={tuple(strides)!r} repeats a stride; list each once."
            )
        object.__setattr__(self, "mask_strides", tuple(int(s) for s in strides))
        if not _is_int(self.embedding_dim) or self.embedding_dim < 0:
            raise ValueError(
                f"embedding_dim={self.embedding_dim!r} is invalid; expected 0 (keep "
                "the backbone's channels) or a positive int."
            )
        if self.trainable_from is None:
            object.__setattr__(self, "trainable_from", "")
        if not isinstance(self.trainable_from, str):
            raise ValueError(
                f"trainable_from={self.trainable_from!r} is invalid; expected a "
                "backbone layer name, '' (train all) or 'none' (freeze all)."
            )
        if not isinstance(self.train_batchnorm, bool):
            raise ValueError(
                f"train_batchnorm={self.train_batchnorm!r} is invalid; expected "
                "True or False."
            )

    def to_dict(self) -> dict:
        """Returns the config as a JSON-able dict (tuples become lists)."""
        values = dataclasses.asdict(self)
        values["mask_strides"] = list(self.mask_strides)
        return values

    @classmethod
    def from_dict(cls, values: Mapping) -> "ExtractorConfig":
        """Rebuilds a config from `to_dict`'s output (e.g. read back from JSON).

        Missing keys take their defaults.

        Raises:
            ValueError: for unknown keys or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"ExtractorConfig has no field(s) {unknown}; known fields are "
                f"{sorted(known)}."
            )
        values = dict(values)
        if isinstance(values.get("mask_strides"), list):
            values["mask_strides"] = tuple(values["mask_strides"])
        return cls(**values)


def build_extractor(config: ExtractorConfig) -> keras.Model:
    """Builds the embedding + mask extractor described by `config`.

    Layers: "backbone" (the model of `backbones.build_backbone`),
    "mask_decoder", "pooling", "projection" (when `config.embedding_dim` > 0)
    and "embedding". The mask decoder runs in float32 and the embedding is
    normalised in float32, so both outputs are float32 under a mixed policy.

    Args:
        config: The extractor's configuration.

    Returns:
        A functional `keras.Model` named "extractor" mapping "image"
        (B, S, S, 3) pixels in [0, 255] (uint8 or float; Keras casts them to
        float32) to `{"embedding": (B, D) float32 of unit L2 norm, "mask":
        (B, S, S, 1) float32 in [0, 1]}`.

    Raises:
        ValueError: for a `trainable_from` layer the backbone does not have.
        FileNotFoundError, OSError, ModuleNotFoundError: when the backbone
            weights cannot be found (see `backbones.build_backbone`).
    """
    size = config.image_size
    backbone = backbones.build_backbone(
        config.backbone, config.backbone_weights, size, model_name="backbone"
    )
    backbones.set_trainable_from(
        backbone, config.trainable_from, config.train_batchnorm
    )

    image = keras.Input(
        (size, size, 3), name="image"
    )  # (B, S, S, 3) in [0, 255].
    features = backbone(image)  # {"stride_s": (B, ceil(S/s), ceil(S/s), C_s)}
    decoder_inputs = [
        features[backbones.feature_key(s)] for s in config.mask_strides
    ]
    # float32: the mask is an output and a loss input; two 1x1 convs cost nothing.
    mask = layers.MaskDecoder(
        mask_size=(size, size),
        num_inputs=len(decoder_inputs),
        dtype="float32",
        name="mask_decoder",
    )(
        decoder_inputs if len(decoder_inputs) > 1 else decoder_inputs[0]
    )  # (B, S, S, 1)

    top = features[backbones.feature_key(32)]
    pooling_spec = layers.get_pooling_spec(config.pooling)
    pooling = pooling_spec.build_fn(name="pooling")
    if pooling_spec.takes_mask:
        pooled = pooling([top, mask])  # (B, h, w, C), (B, S, S, 1) -> (B, C)
    else:
        pooled = pooling(top)  # (B, h, w, C) -> (B, C)
    if config.embedding_dim:
        pooled = keras.layers.Dense(config.embedding_dim, name="projection")(
            pooled
        )
    embedding = layers.L2Normalize(name="embedding")(pooled)
    return keras.Model(
        image, {"embedding": embedding, "mask": mask}, name="extractor"
    )


def with_feature_map(extractor: keras.Model) -> keras.Model:
    """The extractor with its pooled feature map as a third output.

    The same layers and weights, one backbone pass: `{"embedding", "mask",
    "features": (B, h, w, C) the stride-32 features the pooling pools}`.
    """
    pooled = extractor.get_layer("pooling").input
    features = pooled[0] if isinstance(pooled, (list, tuple)) else pooled
    return keras.Model(
        extractor.input,
        {**extractor.output, "features": features},
        name=f"{extractor.name}_with_feature_map",
    )


def _cell_logits_and_mask(extractor, head, photo: dict):
    """(B, h, w, K + 1): the head's logits of each feature cell, projected as
    the embedding is, then the predicted mask at (h, w)."""
    cells = photo["features"]  # (B, h, w, C)
    if any(layer.name == "projection" for layer in extractor.layers):
        cells = extractor.get_layer("projection")(cells)  # (B, h, w, D)
    cell_logits = head(cells)  # (B, h, w, D) -> (B, h, w, K)
    height, width = cells.shape[1:3]
    small_mask = keras.layers.Resizing(
        height, width, antialias=True, name="photo_mask_resize"
    )(
        photo["mask"]
    )  # (B, S, S, 1) -> (B, h, w, 1)
    return keras.layers.Concatenate(name="photo_cells_and_mask")(
        [cell_logits, keras.ops.cast(small_mask, "float32")]
    )  # (B, h, w, K + 1)


def build_training_model(
    extractor: keras.Model,
    num_classes: int,
    identity_margin: float = 0.2,
    identity_scale: float = 30.0,
    margin_type: str = "arcface",
    identity_logits: bool = True,
    photo_logits: bool = False,
    photo_masks: bool = False,
) -> keras.Model:
    """Wraps the extractor with the identity head for training.

    The extractor is shared, not copied: training this model trains it, and
    the extractor alone is what gets exported.

    Args:
        extractor: A model from `build_extractor`.
        num_classes: Number of identities (catalogue products); 0 trains the
            mask decoder and backbone with the mask loss alone.
        identity_margin: The margin of `layers.CosineMarginClassifier`.
        identity_scale: Its logit scale.
        margin_type: "arcface" or "cosface".
        identity_logits: output the head's "logits" for the augmented
            catalogue images (the identity loss's input).
        photo_logits: add a "photo" input (B, S, S, 3) of unlabelled photos
            and output the same head's "photo_logits" for them, without the
            margin (the distillation loss's input: one product weight per
            class serves both).

    Returns:
        A functional `keras.Model` named "training_model" with inputs
        `{"image": (B, S, S, 3), "label": (B,) int32[, "photo"]}` and outputs
        `{"mask": (B, S, S, 1) float32, "logits": (B, num_classes) float32,
        "photo_logits": (B, num_classes) float32, "photo_mask"}` ("logits",
        "photo_logits" and "photo_mask" only when asked for; the margin is
        applied only when called with training=True, as `fit` does). See the
        module docstring for the compile call and the dataset `fit` expects.

    Raises:
        ValueError: for a bad `num_classes` or head argument, or an extractor
            without "embedding" and "mask" outputs.
    """
    if not _is_int(num_classes) or num_classes < 0:
        raise ValueError(
            f"num_classes={num_classes!r} is invalid; expected the number of "
            "catalogue products (>= 1), or 0 for no identity head."
        )
    if not isinstance(extractor.output, dict) or not {
        "embedding",
        "mask",
    } <= set(extractor.output):
        raise ValueError(
            f"extractor {extractor.name} must output a dict with 'embedding' and "
            "'mask'; build it with build_extractor."
        )
    if photo_logits and not num_classes:
        raise ValueError(
            "photo_logits needs the identity head: num_classes >= 1."
        )
    if photo_masks and not photo_logits:
        raise ValueError(
            "photo_masks needs photo_logits: the teacher's targets of the "
            "photos say which product to look for."
        )
    image = keras.Input(extractor.input.shape[1:], name="image")  # (B, S, S, 3)
    label = keras.Input((), dtype="int32", name="label")  # (B,)
    inputs = {"image": image, "label": label}
    features = extractor(image)
    outputs = {"mask": features["mask"]}
    if num_classes:
        head = layers.CosineMarginClassifier(
            num_classes,
            scale=identity_scale,
            margin=identity_margin,
            margin_type=margin_type,
            name="identity_head",
        )
        if identity_logits:
            outputs["logits"] = head(
                [features["embedding"], label]
            )  # (B, D), (B,) -> (B, K)
        if photo_logits:
            inputs["photo"] = keras.Input(
                extractor.input.shape[1:], name="photo"
            )  # (B, S, S, 3)
            photo = with_feature_map(extractor)(inputs["photo"])
            outputs["photo_logits"] = head(
                photo["embedding"]
            )  # (B, D) -> (B, K), no margin without labels
            if photo_masks:
                outputs["photo_mask"] = _cell_logits_and_mask(
                    extractor, head, photo
                )
    return keras.Model(inputs, outputs, name="training_model")
