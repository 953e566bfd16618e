"""One trained model's features pooled several ways, for the bench that
measures what the predicted mask adds when it pools (bench.mask_pooling).
No flags, so tests import it beside any command.
"""

import keras
import numpy as np

from beau_tf.models import extractor as extractor_lib
from beau_tf.models import layers


def _half_peak(mask):
    """1 where the mask reaches half its peak in the image, else 0."""
    peak = keras.ops.max(mask, axis=(1, 2, 3), keepdims=True)  # (B, 1, 1, 1)
    return keras.ops.cast(mask >= 0.5 * peak, "float32")


# name -> the attention a pooling weighs the cells by, from the mask
# (B, S, S, 1) in [0, 1]; the first is the model's own.
POOLINGS = {
    "the mask, as trained": lambda mask: mask,
    "no mask (GAP)": keras.ops.ones_like,
    "mask squared": lambda mask: mask**2,
    "mask^4": lambda mask: mask**4,
    "square root of the mask": keras.ops.sqrt,
    "mask at half its peak": _half_peak,
    "1 - mask": lambda mask: 1.0 - mask,
    "cells below half its peak": lambda mask: 1.0 - _half_peak(mask),
}


def variants_model(extractor: keras.Model) -> keras.Model:
    """`extractor` with one embedding per entry of `POOLINGS`, side by side.

    The same backbone pass, decoder and projection; only the attention the
    features are pooled with changes.

    Returns:
      A model mapping "image" (B, S, S, 3) to `{"embedding": (B, V * D),
      each of its V blocks of D unit-norm (zero where a pooling's attention
      is zero everywhere), "mask": (B, S, S, 1)}`.
    """
    mapped = extractor_lib.with_feature_map(extractor)
    features, mask = mapped.output["features"], mapped.output["mask"]
    names = {layer.name for layer in extractor.layers}
    projection = (
        extractor.get_layer("projection") if "projection" in names else None
    )
    blocks = []
    for index, attention in enumerate(POOLINGS.values()):
        pooled = layers.AttentionPooling(name=f"pooling_{index}")(
            [features, attention(mask)]
        )  # (B, h, w, C), (B, S, S, 1) -> (B, C)
        if projection is not None:
            pooled = projection(pooled)  # (B, C) -> (B, D)
        blocks.append(layers.L2Normalize(name=f"embedding_{index}")(pooled))
    embedding = keras.layers.Concatenate(name="embedding")(
        blocks
    )  # V x (B, D) -> (B, V * D)
    return keras.Model(
        mapped.input,
        {"embedding": embedding, "mask": mask},
        name="pooling_variants",
    )


def split(embeddings: np.ndarray, count: int = len(POOLINGS)) -> list:
    """(N, V * D) side-by-side embeddings -> V = `count` (N, D) unit-norm
    ones.

    `query_multiscale` normalises the whole mean over views; each block,
    normalised again, is the multiscale embedding of its pooling alone.
    """
    blocks = np.split(np.asarray(embeddings, np.float32), count, axis=1)
    return [
        block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        for block in blocks
    ]
