"""Soft product targets for unlabelled in-domain photos, from a teacher export.

The distillation loss (`TrainConfig.photo_loss_weight`) teaches the trained
model what a stronger model, the teacher, sees in the shop's own photos: no
human label is read. The teacher is any export of `python -m beau_tf.export`
(typically the adapted ensemble of `configs/recommended.flags`). It embeds
the catalogue as the index would (`serving_default`) and each photo as a
query (`query_multiscale`); each photo's target is its row of the balanced
soft assignment of `beau_tf.adaptation.self_training.assign` ("sinkhorn"),
so that a few look-alike products cannot absorb most photos.

The targets are computed once per run and kept in the workdir
(`TARGETS_FILE`), so a resumed run trains on the very same targets.
"""

import os
from collections.abc import Sequence

from absl import logging
import numpy as np

from beau_tf.adaptation import self_training
from beau_tf.common import files
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib

TARGETS_FILE = "photo_targets.npz"


def teacher_targets(
    teacher_dir: str,
    catalogue_paths: Sequence[str],
    photo_paths: Sequence[str],
    temperature: float,
    batch_size: int = 32,
) -> tuple[np.ndarray, list[str], str]:
    """Embeds catalogue and photos with the teacher; their soft targets.

    Args:
      teacher_dir: an exported model version folder.
      catalogue_paths: the catalogue images, in label order (column k of the
        targets is the product labelled k).
      photo_paths: the unlabelled photos.
      temperature: softness of the balanced assignment.
      batch_size: images per teacher call.

    Returns:
      `(targets (N, K) float32 rows summing to 1, the N photo paths the
      teacher could read, the teacher's model fingerprint)`. A catalogue
      image the teacher cannot read gets no photo (its column is 0).

    Raises:
      ValueError: the teacher is not a current export, or fewer usable
        photos than usable catalogue images.
    """
    signatures = embedding_lib.load_signatures(  # the export, loaded once
        teacher_dir,
        [contract.SIGNATURE_NAME, contract.MULTISCALE_SIGNATURE_NAME],
    )
    catalogue, kept_catalogue = embedding_lib.embed_files(
        embedding_lib.as_embed_fn(signatures[contract.SIGNATURE_NAME]),
        list(catalogue_paths),
        batch_size=batch_size,
        description="Teacher: catalogue",
    )
    photos, kept_photos = embedding_lib.embed_files(
        embedding_lib.as_embed_fn(
            signatures[contract.MULTISCALE_SIGNATURE_NAME]
        ),
        list(photo_paths),
        batch_size=batch_size,
        description="Teacher: unlabelled photos",
    )
    if len(kept_photos) < len(kept_catalogue):
        raise ValueError(
            f"The teacher {teacher_dir} read {len(kept_photos)} photos for "
            f"{len(kept_catalogue)} catalogue images; the distillation loss "
            "needs at least as many photos as products (several per product "
            "is better)."
        )
    assigned = self_training.assign(
        photos @ catalogue.T, "sinkhorn", temperature
    )  # (N, K') over the readable products
    targets = np.zeros((len(kept_photos), len(catalogue_paths)), np.float32)
    targets[:, kept_catalogue] = assigned
    fingerprint = contract.model_identity(teacher_dir).get(
        "model_fingerprint", ""
    )
    return targets, [photo_paths[i] for i in kept_photos], fingerprint


def load_or_make(
    workdir: str,
    teacher_dir: str,
    catalogue_paths: Sequence[str],
    photo_paths: Sequence[str],
    temperature: float,
) -> tuple[np.ndarray, list[str]]:
    """The run's targets: read from `<workdir>/TARGETS_FILE`, else made
    (`teacher_targets`) and kept there atomically.

    Raises:
      ValueError: the kept targets were made for another catalogue size.
    """
    path = os.path.join(workdir, TARGETS_FILE)
    if os.path.exists(path):
        with np.load(path) as kept:
            targets, paths = kept["targets"], [str(p) for p in kept["paths"]]
        if targets.shape[1] != len(catalogue_paths):
            raise ValueError(
                f"{path} holds targets over {targets.shape[1]} products but "
                f"the catalogue has {len(catalogue_paths)}; use a new "
                "--workdir."
            )
        logging.info(
            "Distillation targets of %d photos from %s.", len(paths), path
        )
        return targets, paths
    targets, paths, fingerprint = teacher_targets(
        teacher_dir, catalogue_paths, photo_paths, temperature
    )
    confident = float(targets.max(1).mean())
    logging.info(
        "Teacher %s (fingerprint %s) labelled %d photos; mean top target %.2f.",
        teacher_dir,
        fingerprint[:12],
        len(paths),
        confident,
    )
    with files.atomic_path(path, ".npz") as temporary:
        np.savez(
            temporary,
            targets=targets,
            paths=np.array(paths),
            teacher=np.array(teacher_dir),
            teacher_fingerprint=np.array(fingerprint),
        )
    return targets, paths
