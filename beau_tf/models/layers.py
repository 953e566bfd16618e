"""Keras layers for background-agnostic product embeddings.

The model of "The Retrieval of the Beautiful" (ACM MM 2019) puts three things on
top of a pretrained CNN backbone whose features are (B, h, w, C):

- `MaskDecoder` predicts the product's foreground mask (B, H, W, 1) from one or
  several backbone stages; it is trained with `losses.mask_mse` against the mask
  of the self-supervised "product pasted on a background" augmentation.
- `AttentionPooling` pools the backbone features weighted by that mask, so the
  embedding ignores the background. It takes the full-size mask and resizes it to
  the feature map itself, so the model wires one mask tensor to both the loss
  and the pooling (see `AttentionPooling`).
- `L2Normalize` makes the (optionally projected) embedding unit-length, and
  `CosineMarginClassifier` is the optional identity head (ArcFace/CosFace, one
  class per catalogue product).

`GlobalGeMPooling` and the Keras GAP/MAC layers are the mask-free baselines.
`POOLINGS` registers every global pooling by name, with whether it takes the
mask; `build_pooling` builds one.

Mixed precision: every layer accepts float16/bfloat16 inputs. Sigmoid, pooling
sums and powers, normalisation and cosine logits are computed in float32;
`MaskDecoder` and the pooling layers return their compute dtype like keras'
built-ins, while `L2Normalize` and `CosineMarginClassifier` default to a float32
policy and always return float32, because their outputs are the embedding and
the loss logits.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence

import keras
from keras import ops

_PACKAGE = "beau_tf"
_MASK_INTERPOLATIONS = ("bilinear", "nearest")
_MARGIN_TYPES = ("arcface", "cosface")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_shape_list(input_shape) -> bool:
    """True for a list of shapes, False for one shape (whose items are ints)."""
    return (
        isinstance(input_shape, (list, tuple))
        and len(input_shape) > 0
        and isinstance(input_shape[0], (list, tuple))
    )


def _static_hw(shape, layer_name: str, what: str) -> tuple[int, int]:
    """Returns the static (h, w) of a (B, h, w, C) shape or raises."""
    if len(shape) != 4:
        raise ValueError(
            f"{layer_name} expects {what} of rank 4 (B, H, W, C); got shape "
            f"{tuple(shape)}."
        )
    h, w = shape[1], shape[2]
    if h is None or w is None:
        raise ValueError(
            f"{layer_name} resizes to the spatial size of {what}, which must be "
            f"static; got shape {tuple(shape)}. Resize images to a fixed size "
            "before the backbone (the shared preprocessing does)."
        )
    return int(h), int(w)


def _l2_normalize(x, axis, epsilon):
    """x / sqrt(max(sum(x^2), epsilon)) along `axis`, in x's dtype."""
    squared_norm = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_norm, epsilon))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskDecoder(keras.layers.Layer):
    """Predicts the foreground mask from one or several backbone feature maps.

    For each input (B, h_i, w_i, C_i) a 1x1 convolution gives a one-channel
    logit map; the logits are resized to the finest input's (h, w) and summed,
    passed through a sigmoid, and the probability map is resized to `mask_size`.

    The layer has a single output, the full-size mask (B, H, W, 1) in [0, 1]: it
    is what `losses.mask_mse` compares with the ground-truth mask, and
    `AttentionPooling` takes the same tensor and resizes it to the pooled
    feature map itself. One tensor thus serves supervision and pooling, and the
    pooling weights are exactly the mask that is supervised.

    Args:
        mask_size: (H, W) of the predicted mask, usually the input image size or
            the size of the ground-truth masks.
        num_inputs: number of feature maps passed to `call`. With more than
            one, pass a list; their static spatial sizes must be known.
        interpolation: "bilinear" (smooth mask) or "nearest" (blocky mask);
            both keep values in [0, 1].
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call args:
        inputs: one tensor (B, h, w, C) or a list of `num_inputs` tensors
            (B, h_i, w_i, C_i), in any order.

    Returns:
        (B, H, W, 1) foreground probability in the layer's compute dtype.

    Raises:
        ValueError: for a bad argument or input shape.
    """

    def __init__(
        self,
        mask_size: Sequence[int],
        num_inputs: int = 1,
        interpolation: str = "bilinear",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if (
            not isinstance(mask_size, (list, tuple))
            or len(mask_size) != 2
            or not all(_is_int(s) and s > 0 for s in mask_size)
        ):
            raise ValueError(
                f"mask_size={mask_size!r} is invalid; expected (height, width) "
                "as two positive ints, e.g. (224, 224)."
            )
        if not _is_int(num_inputs) or num_inputs < 1:
            raise ValueError(
                f"num_inputs={num_inputs!r} is invalid; expected an int >= 1 "
                "(the number of backbone stages fed to the decoder)."
            )
        if interpolation not in _MASK_INTERPOLATIONS:
            raise ValueError(
                f"interpolation={interpolation!r} is invalid; expected one of "
                f"{_MASK_INTERPOLATIONS} (both keep the mask in [0, 1])."
            )
        self.mask_size = tuple(mask_size)
        self.num_inputs = num_inputs
        self.interpolation = interpolation

    def _shape_list(self, input_shape):
        shapes = (
            list(input_shape) if _is_shape_list(input_shape) else [input_shape]
        )
        if len(shapes) != self.num_inputs:
            raise ValueError(
                f"{self.name} was built with num_inputs={self.num_inputs} but "
                f"received {len(shapes)} feature map(s) with shapes {shapes}."
            )
        for shape in shapes:
            if len(shape) != 4:
                raise ValueError(
                    f"{self.name} expects feature maps of rank 4 (B, h, w, C); "
                    f"got shape {tuple(shape)}."
                )
        return shapes

    def build(self, input_shape):
        shapes = self._shape_list(input_shape)
        if self.num_inputs > 1:
            sizes = [
                _static_hw(s, self.name, "the feature maps") for s in shapes
            ]
            self._target_hw = max(sizes, key=lambda hw: hw[0] * hw[1])
        else:
            self._target_hw = None  # A single map needs no alignment.
        self.logit_convs = []
        for i, shape in enumerate(shapes):
            conv = keras.layers.Conv2D(
                filters=1,
                kernel_size=1,
                dtype=self.dtype_policy,
                name=f"logit_conv_{i}",
            )
            conv.build(shape)
            self.logit_convs.append(conv)

    def call(self, inputs):
        features = (
            list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        )
        logits = None
        for conv, feature in zip(self.logit_convs, features):
            # Sum and sigmoid in float32; only the 1x1 convolutions run in half precision.
            logit = ops.cast(
                conv(feature), "float32"
            )  # (B, h_i, w_i, C_i) -> (B, h_i, w_i, 1)
            if (
                self._target_hw is not None
                and tuple(logit.shape[1:3]) != self._target_hw
            ):
                logit = ops.image.resize(
                    logit, self._target_hw, interpolation=self.interpolation
                )  # (B, h_i, w_i, 1) -> (B, h, w, 1)
            logits = logit if logits is None else logits + logit
        mask = ops.sigmoid(logits)
        if tuple(mask.shape[1:3]) != self.mask_size:
            mask = ops.image.resize(
                mask,
                self.mask_size,
                interpolation=self.interpolation,
                antialias=self.interpolation == "bilinear",
            )  # (B, h, w, 1) -> (B, H, W, 1)
        return ops.cast(mask, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        shapes = self._shape_list(input_shape)
        return (shapes[0][0], *self.mask_size, 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mask_size": list(self.mask_size),
                "num_inputs": self.num_inputs,
                "interpolation": self.interpolation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttentionPooling(keras.layers.Layer):
    """Pools a feature map weighted by a spatial attention (foreground) map.

    With features f (B, h, w, C) and attention a (B, h, w, 1):

        out[b, c] = sum_ij a[b, i, j] * f[b, i, j, c] / (sum_ij a[b, i, j] + epsilon)

    An all-ones attention gives global average pooling (up to epsilon); an
    attention selecting one pixel returns that pixel's feature. An all-zero
    attention gives a zero vector. Gradients flow to both inputs.

    The attention may have another spatial size than the features (e.g. the
    full-size mask of `MaskDecoder`); it is then resized to (h, w) with
    antialiased bilinear interpolation, which averages like "area" when
    downsampling but, unlike TensorFlow's area resize, has a gradient. Sums run
    in float32 so half-precision inputs neither overflow nor lose the
    normaliser.

    Args:
        epsilon: added to the attention mass to avoid dividing by zero.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call args:
        inputs: [features (B, h, w, C), attention (B, h', w', 1)], attention
            non-negative (a sigmoid output).

    Returns:
        (B, C) pooled features in the layer's compute dtype.

    Raises:
        ValueError: for a bad epsilon or input shapes.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if not _is_number(epsilon) or epsilon <= 0:
            raise ValueError(
                f"epsilon={epsilon!r} is invalid; expected a positive float "
                "such as 1e-6."
            )
        self.epsilon = epsilon

    def _check_shapes(self, input_shape):
        if not _is_shape_list(input_shape) or len(input_shape) != 2:
            raise ValueError(
                f"{self.name} expects [features (B, h, w, C), attention "
                f"(B, h', w', 1)]; got input shape(s) {input_shape}."
            )
        features_shape, attention_shape = input_shape
        if len(features_shape) != 4 or len(attention_shape) != 4:
            raise ValueError(
                f"{self.name} expects rank-4 features and attention; got shapes "
                f"{tuple(features_shape)} and {tuple(attention_shape)}."
            )
        if attention_shape[-1] != 1:
            raise ValueError(
                f"{self.name} expects a one-channel attention (B, h', w', 1); "
                f"got shape {tuple(attention_shape)}."
            )
        if tuple(features_shape[1:3]) != tuple(attention_shape[1:3]):
            _static_hw(features_shape, self.name, "the features")
        return features_shape, attention_shape

    def build(self, input_shape):
        self._check_shapes(input_shape)

    def call(self, inputs):
        features, attention = inputs
        features = ops.cast(features, "float32")
        attention = ops.cast(attention, "float32")
        feature_hw = tuple(features.shape[1:3])
        if feature_hw != tuple(attention.shape[1:3]):
            attention = ops.image.resize(
                attention, feature_hw, interpolation="bilinear", antialias=True
            )  # (B, h', w', 1) -> (B, h, w, 1)
        weighted_sum = ops.sum(
            attention * features, axis=(1, 2)
        )  # (B, h, w, C) -> (B, C)
        mass = ops.sum(attention, axis=(1, 2))  # (B, h, w, 1) -> (B, 1)
        return ops.cast(
            weighted_sum / (mass + self.epsilon), self.compute_dtype
        )

    def compute_output_shape(self, input_shape):
        features_shape, _ = self._check_shapes(input_shape)
        return (features_shape[0], features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GlobalGeMPooling(keras.layers.Layer):
    """Generalised-mean (GeM) pooling over the spatial axes.

        out[b, c] = (mean_ij max(f[b, i, j, c], epsilon) ** p) ** (1 / p)

    p = 1 is average pooling and p -> inf tends to max pooling. Powers are
    taken in float32 (f ** 3 overflows float16 from f ~ 40).

    Args:
        p: the exponent, >= 1.
        trainable_p: whether p is learned. p is a weight named "p" either way,
            clamped to >= 1 in `call` when trainable.
        epsilon: lower clamp of the features, keeping the power's gradient
            finite; > 0.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call args:
        inputs: features (B, h, w, C).

    Returns:
        (B, C) pooled features in the layer's compute dtype.

    Raises:
        ValueError: for a bad argument or input shape.
    """

    def __init__(
        self,
        p: float = 3.0,
        trainable_p: bool = False,
        epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not _is_number(p) or p < 1:
            raise ValueError(
                f"p={p!r} is invalid; expected a float >= 1 (1 is average "
                "pooling, 3 is the usual GeM value)."
            )
        if not isinstance(trainable_p, bool):
            raise ValueError(
                f"trainable_p={trainable_p!r} is invalid; expected a bool."
            )
        if not _is_number(epsilon) or epsilon <= 0:
            raise ValueError(
                f"epsilon={epsilon!r} is invalid; expected a positive float "
                "such as 1e-6."
            )
        self.p = float(p)
        self.trainable_p = trainable_p
        self.epsilon = epsilon

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.name} expects features (B, h, w, C); got shape "
                f"{tuple(input_shape)}."
            )
        # Not autocast: a float16 copy of a learned p would round its updates.
        self.p_weight = self.add_weight(
            name="p",
            shape=(),
            initializer=keras.initializers.Constant(self.p),
            trainable=self.trainable_p,
            autocast=False,
        )

    def call(self, inputs):
        p = ops.maximum(ops.cast(self.p_weight, "float32"), 1.0)
        features = ops.maximum(ops.cast(inputs, "float32"), self.epsilon)
        mean = ops.mean(
            ops.power(features, p), axis=(1, 2)
        )  # (B, h, w, C) -> (B, C)
        return ops.cast(ops.power(mean, 1.0 / p), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "p": self.p,
                "trainable_p": self.trainable_p,
                "epsilon": self.epsilon,
            }
        )
        return config


@dataclasses.dataclass(frozen=True)
class PoolingSpec:
    """What the registry knows about one global pooling.

    Attributes:
        name: The registry key, e.g. "gem"; the value of `--pooling`.
        description: A few words for flag help, e.g. "generalised mean".
        takes_mask: Whether the layer is called on [features (B, h, w, C),
            mask (B, H, W, 1)] rather than on the features alone.
        build_fn: `(**layer_kwargs) -> keras.layers.Layer` mapping the
            inputs above to (B, C), usually the layer class itself.
    """

    name: str
    description: str
    takes_mask: bool
    build_fn: Callable[..., keras.layers.Layer] = dataclasses.field(repr=False)


# A new pooling is its layer class above plus one entry here.
POOLINGS: dict[str, PoolingSpec] = {
    spec.name: spec
    for spec in (
        PoolingSpec(
            "gap",
            "global average",
            takes_mask=False,
            build_fn=keras.layers.GlobalAveragePooling2D,
        ),
        PoolingSpec(
            "gem",
            "generalised mean",
            takes_mask=False,
            build_fn=GlobalGeMPooling,
        ),
        PoolingSpec(
            "mac",
            "global max",
            takes_mask=False,
            build_fn=keras.layers.GlobalMaxPooling2D,
        ),
        PoolingSpec(
            "attention",
            "mask-weighted average (the paper)",
            takes_mask=True,
            build_fn=AttentionPooling,
        ),
    )
}
POOLING_NAMES = tuple(POOLINGS)


def get_pooling_spec(name: str) -> PoolingSpec:
    """Returns the registry entry of `name`.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if not isinstance(name, str) or name not in POOLINGS:
        raise ValueError(
            f"pooling={name!r} is unknown; expected one of {POOLING_NAMES}."
        )
    return POOLINGS[name]


def build_pooling(pooling: str, /, **kwargs) -> keras.layers.Layer:
    """Returns the global pooling layer called `pooling`.

    Args:
        pooling: A key of `POOLINGS`, e.g. "gem".
        **kwargs: passed to the layer, e.g. `name="pool"` or `p=4.0`.

    Returns:
        A layer mapping features (B, h, w, C) to (B, C); called on
        [features, mask (B, H, W, 1)] when its spec `takes_mask`.

    Raises:
        ValueError: for an unknown name.
    """
    return get_pooling_spec(pooling).build_fn(**kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L2Normalize(keras.layers.Layer):
    """Scales vectors to unit L2 norm, in float32.

        out = x / sqrt(max(sum(x ** 2, axis), epsilon))

    Unlike keras.layers.UnitNormalization, the norm is computed and returned in
    float32 whatever the inputs' dtype (1e-12 underflows in float16), and the
    layer defaults to a float32 dtype policy so that a global mixed policy does
    not round the embedding to half precision on the way in.

    Args:
        axis: the axis to normalise, -1 for embeddings (B, D).
        epsilon: lower bound on the squared norm; a zero vector stays zero.
        **kwargs: base `keras.layers.Layer` arguments; `dtype` defaults to
            "float32".

    Call args:
        inputs: any tensor, usually (B, D).

    Returns:
        The same shape, float32, unit norm along `axis`.

    Raises:
        ValueError: for a bad argument.
    """

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not _is_int(axis):
            raise ValueError(
                f"axis={axis!r} is invalid; expected an int such as -1."
            )
        if not _is_number(epsilon) or epsilon <= 0:
            raise ValueError(
                f"epsilon={epsilon!r} is invalid; expected a positive float "
                "such as 1e-12."
            )
        self.axis = axis
        self.epsilon = epsilon

    def call(self, inputs):
        return _l2_normalize(
            ops.cast(inputs, "float32"), self.axis, self.epsilon
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype="float32"
        )

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CosineMarginClassifier(keras.layers.Layer):
    """Scaled-cosine classifier with an additive angular or cosine margin.

    The identity head: every catalogue product is a class. With the embedding
    e (B, D) and class weights W (D, num_classes), both L2-normalised in
    float32, cos(theta_bk) = e_b . W_k and the logits are

        logits[b, k] = scale * cos(theta_bk)                 if k != y_b
        logits[b, y_b] = scale * phi(theta_b,y_b)

    with phi = cos(theta + margin) for "arcface" and cos(theta) - margin for
    "cosface". ArcFace's cos(theta + m) stops decreasing once theta + m > pi,
    so there phi = cos(theta) - m * sin(m) (insightface's threshold), or with
    `easy_margin` phi = cos(theta) whenever cos(theta) <= 0.

    The margin is applied only when `training` is true and labels are given;
    otherwise (inference, or an embedding alone) the logits are the plain
    scale * cos(theta). Feed them to
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.

    Args:
        num_classes: number of classes (catalogue products), >= 1.
        scale: the logit scale s, > 0.
        margin: the margin m, in [0, pi).
        margin_type: "arcface" (additive angular) or "cosface" (additive cosine).
        easy_margin: ArcFace only; keep cos(theta) for non-positive cosines
            instead of the threshold fallback.
        **kwargs: base `keras.layers.Layer` arguments; `dtype` defaults to
            "float32".

    Call args:
        inputs: [embedding (B, D), labels (B,) int] or the embeddings alone,
            (B, D) or (B, ..., D) (e.g. every cell of a projected feature
            map, scored without a margin).
        training: whether to apply the margin; never defaults to True.

    Returns:
        (B, num_classes), or (B, ..., num_classes), float32 logits.

    Raises:
        ValueError: for a bad argument or input shape.
    """

    def __init__(
        self,
        num_classes: int,
        scale: float = 30.0,
        margin: float = 0.2,
        margin_type: str = "arcface",
        easy_margin: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not _is_int(num_classes) or num_classes < 1:
            raise ValueError(
                f"num_classes={num_classes!r} is invalid; expected an int >= 1 "
                "(the number of catalogue products)."
            )
        if not _is_number(scale) or scale <= 0:
            raise ValueError(
                f"scale={scale!r} is invalid; expected a float > 0 such as 30."
            )
        if not _is_number(margin) or not 0 <= margin < math.pi:
            raise ValueError(
                f"margin={margin!r} is invalid; expected a float in [0, pi) "
                "such as 0.2."
            )
        if margin_type not in _MARGIN_TYPES:
            raise ValueError(
                f"margin_type={margin_type!r} is invalid; expected one of {_MARGIN_TYPES}."
            )
        if not isinstance(easy_margin, bool):
            raise ValueError(
                f"easy_margin={easy_margin!r} is invalid; expected a bool."
            )
        self.num_classes = num_classes
        self.scale = float(scale)
        self.margin = float(margin)
        self.margin_type = margin_type
        self.easy_margin = easy_margin

    def _embedding_shape(self, input_shape):
        labelled = _is_shape_list(input_shape)
        shape = input_shape[0] if labelled else input_shape
        if (
            len(shape) < 2
            or shape[-1] is None
            or (labelled and len(shape) != 2)
        ):
            raise ValueError(
                f"{self.name} expects embeddings (B, D) with a known D (or "
                f"(B, ..., D) without labels); got shape {tuple(shape)}."
            )
        return shape

    def build(self, input_shape):
        embedding_shape = self._embedding_shape(input_shape)
        # Not autocast: the cosines are computed from float32 weights.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(embedding_shape[-1], self.num_classes),
            initializer="glorot_uniform",
            autocast=False,
        )

    def _target_phi(self, cos):
        m = self.margin
        if self.margin_type == "cosface":
            return cos - m
        # Floor keeps d sin / d cos finite where |cos| = 1.
        sin = ops.sqrt(ops.clip(1.0 - ops.square(cos), 1e-12, 1.0))
        phi = cos * math.cos(m) - sin * math.sin(m)
        if self.easy_margin:
            return ops.where(cos > 0.0, phi, cos)
        # cos > cos(pi - m)  <=>  theta + m < pi.
        return ops.where(
            cos > math.cos(math.pi - m), phi, cos - m * math.sin(m)
        )

    def call(self, inputs, training=None):
        if isinstance(inputs, (list, tuple)):
            embedding, labels = inputs
        else:
            embedding, labels = inputs, None
        embedding = _l2_normalize(ops.cast(embedding, "float32"), -1, 1e-12)
        kernel = _l2_normalize(ops.cast(self.kernel, "float32"), 0, 1e-12)
        cos = ops.clip(
            ops.matmul(embedding, kernel), -1.0, 1.0
        )  # (B, D) x (D, K) -> (B, K)
        if not training or labels is None:
            return self.scale * cos
        labels = ops.reshape(
            ops.cast(labels, "int32"), (-1,)
        )  # (B,) or (B, 1) -> (B,)
        is_target = ops.one_hot(
            labels, self.num_classes, dtype="bool"
        )  # (B,) -> (B, K)
        return self.scale * ops.where(is_target, self._target_phi(cos), cos)

    def compute_output_shape(self, input_shape):
        return (*self._embedding_shape(input_shape)[:-1], self.num_classes)

    def compute_output_spec(self, inputs, training=None):
        embedding = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return keras.KerasTensor(
            self.compute_output_shape(embedding.shape), dtype="float32"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "scale": self.scale,
                "margin": self.margin,
                "margin_type": self.margin_type,
                "easy_margin": self.easy_margin,
            }
        )
        return config
