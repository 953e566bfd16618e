"""Assembling the model to export: trained extractors of training workdirs
and/or untrained ImageNet backbones, one or an ensemble, optionally
PCA-whitened.

Training runs are read through `beau_tf.training.workdir`; the query path
(index, search, evaluate, serve) never imports this package.
"""

from collections.abc import Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from beau_tf.models import ensemble as ensemble_lib
from beau_tf.models import extractor as extractor_lib
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import preprocess
from beau_tf.training import workdir as workdir_lib


def embed_images(
    model: keras.Model,
    paths: Sequence[str],
    image_size: int,
    batch_size: int = 32,
) -> tuple[np.ndarray, list[str]]:
    """Embeds image files with a Keras extractor, as its export would.

    Files go through `embedding.embed_files` (the image contract and the
    signatures' decoding), so unusable files are skipped with one line each.

    Returns:
      `(embeddings (N, D) float32, the N paths embedded)`.
    """

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed(images):
        pixels, status = preprocess.decode_batch(images, image_size)
        return model(pixels, training=False)["embedding"], status

    def embed_fn(images: Sequence[bytes]) -> embedding_lib.EmbeddedBatch:
        embeddings, status = embed(tf.constant(list(images), tf.string))
        return embedding_lib.EmbeddedBatch(
            embeddings=np.asarray(embeddings, np.float32),
            statuses=[value.decode("utf-8") for value in status.numpy()],
            model_fingerprint="",
        )

    embeddings, kept = embedding_lib.embed_files(
        embed_fn, paths, batch_size, description="Embedding for PCA"
    )
    return embeddings, [paths[index] for index in kept]


def untrained_members(
    backbones: Sequence[str], image_size: int
) -> list[keras.Model]:
    """Extractors of ImageNet backbones with global average pooling and no
    training.

    On GroceryStore an ensemble of them, adapted, is step 1 of the recommended
    recipe (configs/recommended.flags) and the teacher that distillation
    learns from; the distilled ensemble, adapted, scores best
    (bench/RESULTS.md, "Distilling the adapted ensemble").
    """
    return [
        extractor_lib.build_extractor(
            extractor_lib.ExtractorConfig(
                backbone=backbone,
                backbone_weights="imagenet",
                image_size=image_size,
                pooling="gap",
            )
        )
        for backbone in backbones
    ]


def build_export_model(
    workdirs: Sequence[str] = (),
    weights: Sequence[float] | None = None,
    pca_dim: int = 0,
    pca_paths: Sequence[str] = (),
    batch_size: int = 32,
    backbones: Sequence[str] = (),
    image_size: int = 224,
) -> tuple[keras.Model, list[dict]]:
    """The model to export: trained extractors of training workdirs and/or
    untrained ImageNet backbones, one or an ensemble.

    Args:
      workdirs: training workdirs (see `beau_tf.training.workdir`).
      weights: one weight per member (workdirs first, then backbones); None
        weighs them equally.
      pca_dim: > 0 adds PCA whitening to this size, learned on the
        embeddings of `pca_paths`.
      pca_paths: catalogue images to learn the whitening on.
      batch_size: batch size for embedding `pca_paths`.
      backbones: names of ImageNet backbones to add untrained (see
        `untrained_members`).
      image_size: their image size, when there is no workdir to take it from.

    Returns:
      `(model, members for the identity)`; the model's input fixes the
      image size.

    Raises:
      ValueError, FileNotFoundError: for bad workdirs, weights or PCA
        settings.
    """
    if not workdirs and not backbones:
        raise ValueError(
            "Nothing to export: name training workdirs (--workdirs) or "
            "ImageNet backbones (--backbones)."
        )
    count = len(workdirs) + len(backbones)
    if weights is None:
        weights = [1.0] * count
    extractors = []
    if workdirs:
        extractors, image_size = workdir_lib.load_extractors(workdirs)
    extractors += untrained_members(backbones, image_size)
    sources = [workdir_lib.source(w) for w in workdirs] + [
        {
            "backbone": b,
            "weights": "imagenet",
            "pooling": "gap",
            "trained_mask_decoder": False,
        }
        for b in backbones
    ]
    # The ensemble's mask is its trained decoders' (an untrained one's is
    # noise); with none trained, every member's.
    mask_members = [
        index
        for index, source in enumerate(sources)
        if source["trained_mask_decoder"]
    ] or None
    model = ensemble_lib.build_ensemble(
        extractors, weights, mask_members=mask_members
    )
    if pca_dim > 0:
        if not pca_paths:
            raise ValueError(
                f"pca_dim={pca_dim} needs catalogue images to learn the "
                "whitening on (--pca_catalog)."
            )
        embeddings, _ = embed_images(model, pca_paths, image_size, batch_size)
        logging.info(
            "Learning PCA whitening to %d from %d embeddings of size %d.",
            pca_dim,
            *embeddings.shape,
        )
        whitening = ensemble_lib.fit_pca_whitening(embeddings, pca_dim)
        model = ensemble_lib.build_ensemble(
            extractors, weights, whitening, mask_members=mask_members
        )
    members = [
        dict(source, weight=float(weight))
        for source, weight in zip(sources, weights)
    ]
    return model, members


def check_mask_views(pads: Sequence[float], members: Sequence[dict]) -> None:
    """Refuses mask-guided query views for a model whose mask decoders never
    learned where the product is (untrained backbones, or runs without the
    mask loss and attention pooling).

    Args:
      pads: the mask views' paddings (`contract.check_mask_views`).
      members: what `build_export_model` says the model was built from.

    Raises:
      ValueError: mask views, and no member with a trained mask decoder.
    """
    if pads and not any(member["trained_mask_decoder"] for member in members):
        raise ValueError(
            "--query_mask_views needs a member whose mask decoder learned "
            "where the product is (--workdirs of a run with the mask loss or "
            "attention pooling); untrained backbones' decoders never did."
        )
