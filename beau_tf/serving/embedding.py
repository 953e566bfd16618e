"""Embedding image files through an exported model, in batches.

The exported SavedModel's `serving_default` signature takes encoded image
bytes, so indexing, evaluation and local search feed it exactly what TF
Serving receives: the preprocessing is the served one by construction.
"""

from collections.abc import Callable, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from beau_tf.common import progress
from beau_tf.serving import contract

# (B,) encoded image bytes -> (B, D) float32 embeddings.
EmbedFn = Callable[[tf.Tensor], np.ndarray]


def load_embed_fn(
    saved_model_dir: str, signature_name: str = contract.SIGNATURE_NAME
) -> EmbedFn:
    """A signature of an exported model (`serving_default`: one view per
    image; `query_multiscale`: see `beau_tf.serving.contract`), as a function.

    Raises:
        FileNotFoundError: `saved_model_dir` holds no SavedModel.
        ValueError: the SavedModel has no signature `signature_name`.
    """
    if not tf.saved_model.contains_saved_model(saved_model_dir):
        raise FileNotFoundError(
            f"{saved_model_dir} holds no SavedModel (an exported version "
            "directory such as exported/beau_tf/1 expected; "
            "python -m beau_tf.export writes one)."
        )
    signatures = tf.saved_model.load(saved_model_dir).signatures
    if signature_name not in signatures:
        raise ValueError(
            f"{saved_model_dir} has no signature {signature_name!r} (it has "
            f"{sorted(signatures)}); re-export it with python -m "
            "beau_tf.export, or query with the signature it has."
        )
    signature = signatures[signature_name]

    def embed(images: tf.Tensor) -> np.ndarray:
        return signature(images=images)[contract.EMBEDDING_OUTPUT].numpy()

    return embed


def embed_files(
    embed_fn: EmbedFn,
    paths: Sequence[str],
    batch_size: int = 32,
    description: str = "Embedding images",
) -> tuple[np.ndarray, list[int]]:
    """Embeds image files; files the model cannot decode are skipped.

    Files are read by a prefetching `tf.data` pipeline while the model works.
    A batch the model rejects (an undecodable image in it) is retried image by
    image, and each bad file is skipped with a warning that names it.

    Args:
        embed_fn: from `load_embed_fn` (or a TF Serving client).
        paths: image files.
        batch_size: images per model call.
        description: progress label.

    Returns:
        `(embeddings (M, D) float32, kept)`: `kept[i]` is the index in `paths`
        of embedding row `i`.

    Raises:
        ValueError: no file could be embedded.
    """
    paths = list(paths)
    reads = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(2)
    )
    num_batches = -(-len(paths) // batch_size)
    rows, kept = [], []
    for number, images in enumerate(
        progress.track(reads, num_batches, description)
    ):
        first = number * batch_size
        try:
            rows.append(embed_fn(images))
            kept.extend(range(first, first + len(images)))
            continue
        except tf.errors.InvalidArgumentError:
            pass  # an undecodable image: find it below
        for offset in range(len(images)):
            try:
                rows.append(embed_fn(images[offset : offset + 1]))
                kept.append(first + offset)
            except tf.errors.InvalidArgumentError:
                logging.warning(
                    "Skipped %s: not a decodable image (JPEG, PNG, BMP, GIF "
                    "or WebP expected).",
                    paths[first + offset],
                )
    if not rows:
        raise ValueError(f"None of the {len(paths)} images could be embedded.")
    skipped = len(paths) - len(kept)
    if skipped:
        logging.warning("%d of %d images skipped.", skipped, len(paths))
    return np.concatenate(rows).astype(np.float32), kept
