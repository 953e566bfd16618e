"""The model to export, built from training workdirs: one extractor or an
ensemble of several, optionally PCA-whitened.

This is the one part of `beau_tf.serving` that reads training runs (their
`train_config.json` and `extractor.keras`); the query path never imports it.
"""

import os
from collections.abc import Sequence

from absl import logging
import keras
import numpy as np

from beau_tf.models import ensemble as ensemble_lib
from beau_tf.serving import preprocess
from beau_tf.training import config as config_lib

# Registers the extractor's Keras layers, which load_model needs.
import beau_tf.models.extractor  # noqa: F401  pylint: disable=unused-import


def load_members(
    workdirs: Sequence[str],
) -> tuple[list[keras.Model], int]:
    """The trained extractors of training workdirs and their image size.

    Raises:
      FileNotFoundError: a workdir without train_config.json or
        extractor.keras.
      ValueError: workdirs trained at different image sizes.
    """
    extractors, sizes = [], []
    for workdir in workdirs:
        config = config_lib.load_train_config(workdir)
        path = os.path.join(workdir, config_lib.EXTRACTOR_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: the run in {workdir} has not finished "
                "(python -m beau_tf.train writes it at the end)."
            )
        extractors.append(keras.saving.load_model(path))
        sizes.append(config.extractor.image_size)
    if len(set(sizes)) > 1:
        raise ValueError(
            f"Workdirs {list(workdirs)} were trained at image sizes {sizes}; "
            "ensemble members must share one image size."
        )
    return extractors, sizes[0]


def embed_images(
    model: keras.Model,
    paths: Sequence[str],
    image_size: int,
    batch_size: int = 32,
) -> tuple[np.ndarray, list[str]]:
    """Embeds image files through `preprocess.make_image_dataset`.

    Returns:
      `(embeddings (N, D) float32, the N paths embedded)`; undecodable files
      are skipped with a warning.
    """
    embeddings, embedded = [], []
    dataset = preprocess.make_image_dataset(list(paths), image_size, batch_size)
    for batch in dataset:
        outputs = model(batch["image"], training=False)
        embeddings.append(np.asarray(outputs["embedding"], np.float32))
        embedded.extend(path.decode("utf-8") for path in batch["path"].numpy())
    if not embeddings:
        raise ValueError(f"None of the {len(paths)} images could be decoded.")
    return np.concatenate(embeddings), embedded


def build_export_model(
    workdirs: Sequence[str],
    weights: Sequence[float] | None = None,
    pca_dim: int = 0,
    pca_paths: Sequence[str] = (),
    batch_size: int = 32,
) -> tuple[keras.Model, list[dict]]:
    """The model to export from training workdirs: one extractor or more.

    Args:
      workdirs: training workdirs (see `beau_tf.training`).
      weights: one weight per workdir; None weighs them equally.
      pca_dim: > 0 adds PCA whitening to this size, learned on the
        embeddings of `pca_paths`.
      pca_paths: catalogue images to learn the whitening on.
      batch_size: batch size for embedding `pca_paths`.

    Returns:
      `(model, members for the identity)`; the model's input fixes the
      image size.

    Raises:
      ValueError, FileNotFoundError: for bad workdirs, weights or PCA
        settings.
    """
    if not workdirs:
        raise ValueError("No workdirs given; name at least one training run.")
    if weights is None:
        weights = [1.0] * len(workdirs)
    extractors, image_size = load_members(workdirs)
    model = ensemble_lib.build_ensemble(extractors, weights)
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
        model = ensemble_lib.build_ensemble(extractors, weights, whitening)
    members = [
        {"workdir": os.path.abspath(workdir), "weight": float(weight)}
        for workdir, weight in zip(workdirs, weights)
    ]
    return model, members
