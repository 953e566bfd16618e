"""Several extractors, trained or not, as one model, optionally PCA-whitened.

    ensemble = build_ensemble([r50, lite2], weights=[1.0, 0.5])
    mean, projection = fit_pca_whitening(catalog_embeddings, dim=256)
    whitened = build_ensemble([r50, lite2], [1.0, 0.5], (mean, projection))

The ensemble embedding is the concatenation of the members' unit embeddings,
each scaled by its weight, normalised again; whitening then centres it,
projects it onto the catalogue's leading principal directions scaled to unit
variance, and normalises once more. Cosine similarity of two ensemble
embeddings is therefore the weighted mean of the members' similarities
(before whitening). The mask is the members' mean mask, or the mean over
the members whose decoders were trained (`mask_members`).

All members must take the same image size: the exported model decodes each
image once, at one size, and resizing an already resized image again per
member would blur it.
"""

from collections.abc import Sequence

import keras
import numpy as np

from beau_tf.models import layers

_PACKAGE = "beau_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedConcat(keras.layers.Layer):
    """Concatenates vectors, each scaled by its weight: concat(w_i * x_i).

    Args:
      member_weights: one positive weight per input.
      **kwargs: base `keras.layers.Layer` arguments; `dtype` defaults to
        "float32".

    Call args:
      inputs: a list of (B, D_i) tensors, as many as `member_weights`.

    Returns:
      (B, sum D_i) float32.

    Raises:
      ValueError: for an empty, non-positive or non-finite weight list.
    """

    def __init__(self, member_weights: Sequence[float], **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        member_weights = [float(weight) for weight in member_weights]
        if not member_weights or not all(
            np.isfinite(weight) and weight > 0 for weight in member_weights
        ):
            raise ValueError(
                f"member_weights={member_weights}; one positive weight per "
                "member expected."
            )
        self.member_weights = member_weights

    def call(self, inputs):
        if len(inputs) != len(self.member_weights):
            raise ValueError(
                f"{self.name} got {len(inputs)} inputs for "
                f"{len(self.member_weights)} weights."
            )
        return keras.ops.concatenate(
            [
                keras.ops.cast(x, "float32") * weight
                for x, weight in zip(inputs, self.member_weights)
            ],
            axis=-1,
        )  # [(B, D_i)] -> (B, sum D_i)

    def compute_output_shape(self, input_shape):
        dims = [shape[-1] for shape in input_shape]
        total = None if None in dims else sum(dims)
        return (input_shape[0][0], total)

    def get_config(self):
        config = super().get_config()
        config["member_weights"] = list(self.member_weights)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PCAWhitening(keras.layers.Layer):
    """Applies a learned whitening: (x - mean) @ projection.

    The weights ("mean" (D,), "projection" (D, output_dim)) are non-trainable
    and start at zero; set them with `set_weights([mean, projection])`, e.g.
    from `fit_pca_whitening`. They are saved with the model.

    Args:
      output_dim: size of the whitened vectors.
      **kwargs: base `keras.layers.Layer` arguments; `dtype` defaults to
        "float32".

    Call args:
      inputs: (B, D).

    Returns:
      (B, output_dim) float32.

    Raises:
      ValueError: for an `output_dim` below 1.
    """

    def __init__(self, output_dim: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(output_dim, bool) or not isinstance(output_dim, int):
            raise ValueError(f"output_dim={output_dim!r}; an int expected.")
        if output_dim < 1:
            raise ValueError(f"output_dim={output_dim}; at least 1 expected.")
        self.output_dim = output_dim

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.mean = self.add_weight(
            shape=(input_dim,),
            initializer="zeros",
            trainable=False,
            name="mean",
        )
        self.projection = self.add_weight(
            shape=(input_dim, self.output_dim),
            initializer="zeros",
            trainable=False,
            name="projection",
        )

    def call(self, inputs):
        centred = keras.ops.cast(inputs, "float32") - self.mean  # (B, D)
        return keras.ops.matmul(centred, self.projection)  # (B, output_dim)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config["output_dim"] = self.output_dim
        return config


def fit_pca_whitening(
    embeddings: np.ndarray, dim: int, epsilon: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Learns PCA whitening from (catalogue) embeddings.

    Args:
      embeddings: (N, D) vectors, e.g. the catalogue's ensemble embeddings.
      dim: number of principal directions kept. Centring removes one degree
        of freedom, so N embeddings span at most N - 1 directions: dim must
        be at most min(N - 1, D).
      epsilon: added to each variance before dividing by its square root, so
        that near-zero directions are not blown up.

    Returns:
      `(mean (D,), projection (D, dim))`, float32, such that
      `(x - mean) @ projection` has unit variance along each kept direction
      (on `embeddings`), largest variance first.

    Raises:
      ValueError: for embeddings that are not (N, D) finite numbers or a dim
        out of range.
    """
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2 or not np.all(np.isfinite(embeddings)):
        raise ValueError(
            f"embeddings of shape {embeddings.shape}; an (N, D) array of "
            "finite numbers expected."
        )
    count, size = embeddings.shape
    limit = min(count - 1, size)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise ValueError(f"dim={dim!r}; an int expected.")
    if not 1 <= dim <= limit:
        raise ValueError(
            f"PCA whitening to dim={dim} from {count} embeddings of size "
            f"{size}: dim must be between 1 and min(N - 1, D) = {limit}; use a "
            "smaller dim or more catalogue images."
        )
    mean = embeddings.mean(axis=0)
    centred = embeddings - mean
    # Right singular vectors are the principal directions; s**2 / (N - 1)
    # their variances.
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    variances = singular[:dim] ** 2 / (count - 1)
    projection = directions[:dim].T / np.sqrt(variances + epsilon)
    return mean.astype(np.float32), projection.astype(np.float32)


def build_ensemble(
    extractors: Sequence[keras.Model],
    weights: Sequence[float] | None = None,
    whitening: tuple[np.ndarray, np.ndarray] | None = None,
    name: str = "ensemble",
    mask_members: Sequence[int] | None = None,
) -> keras.Model:
    """Combines extractors into one model with the extractor's interface.

    The members are renamed "member_0", "member_1", ... (extractors loaded
    from different workdirs are all called "extractor", and names must be
    unique within a model) and shared, not copied.

    Args:
      extractors: models from `extractor.build_extractor` (or loaded from a
        workdir's extractor.keras), all with the same image size.
      weights: one positive weight per member; None weighs them equally.
      whitening: `(mean (D,), projection (D, d))` from `fit_pca_whitening`,
        with D the sum of the members' embedding sizes; None for none.
      name: the model's name.
      mask_members: the members whose masks the ensemble's mask averages
        (those whose decoders were trained); None: every member.

    Returns:
      A functional `keras.Model` mapping "image" (B, S, S, 3) pixels in
      [0, 255] to `{"embedding": (B, D or d) float32 of unit L2 norm, "mask":
      (B, S, S, 1) float32}`, with layers "member_<i>", "weighted_concat",
      "concat_normalize" and, when whitening, "whitening" and "embedding".

    Raises:
      ValueError: for no members, members of different image sizes or without
        "embedding" and "mask" outputs, or weights or whitening arrays that do
        not fit them.
    """
    extractors = list(extractors)
    if not extractors:
        raise ValueError("No extractors given: an ensemble needs at least one.")
    sizes = []
    for index, member in enumerate(extractors):
        if not isinstance(member.output, dict) or not {
            "embedding",
            "mask",
        } <= set(member.output):
            raise ValueError(
                f"Member {index} ({member.name}) must output a dict with "
                "'embedding' and 'mask'; build it with build_extractor."
            )
        sizes.append(tuple(member.input.shape[1:]))
    if len(set(sizes)) > 1:
        raise ValueError(
            f"Members take different image shapes {sizes}; an ensemble decodes "
            "each image once, at one size: train the members at the same "
            "image_size."
        )
    if weights is None:
        weights = [1.0] * len(extractors)
    if len(weights) != len(extractors):
        raise ValueError(
            f"{len(weights)} weights for {len(extractors)} members; give one "
            "weight per member."
        )
    total_dim = sum(
        member.output["embedding"].shape[-1] for member in extractors
    )

    image = keras.Input(sizes[0], name="image")  # (B, S, S, 3) in [0, 255]
    embeddings, masks = [], []
    for index, member in enumerate(extractors):
        member.name = f"member_{index}"
        outputs = member(image)
        embeddings.append(outputs["embedding"])  # (B, D_i)
        masks.append(outputs["mask"])  # (B, S, S, 1)
    concatenated = WeightedConcat(weights, name="weighted_concat")(
        embeddings
    )  # [(B, D_i)] -> (B, D)
    embedding = layers.L2Normalize(name="concat_normalize")(concatenated)
    if whitening is not None:
        mean, projection = (
            np.asarray(array, np.float32) for array in whitening
        )
        if mean.shape != (total_dim,) or (
            projection.ndim != 2 or projection.shape[0] != total_dim
        ):
            raise ValueError(
                f"Whitening arrays of shapes {mean.shape} and "
                f"{projection.shape} do not fit the ensemble's embedding size "
                f"{total_dim}; expected ({total_dim},) and ({total_dim}, d), "
                "as fit_pca_whitening returns for these members."
            )
        whiten = PCAWhitening(projection.shape[1], name="whitening")
        embedding = whiten(embedding)  # (B, D) -> (B, d)
        whiten.set_weights([mean, projection])
        embedding = layers.L2Normalize(name="embedding")(embedding)
    if mask_members is not None:
        if not mask_members or not set(mask_members) <= set(
            range(len(extractors))
        ):
            raise ValueError(
                f"mask_members={list(mask_members)}; indices of some of the "
                f"{len(extractors)} members expected."
            )
        masks = [masks[index] for index in sorted(set(mask_members))]
    if len(masks) > 1:
        mask = keras.layers.Average(name="mask")(masks)  # (B, S, S, 1)
    else:
        mask = masks[0]
    return keras.Model(image, {"embedding": embedding, "mask": mask}, name=name)
