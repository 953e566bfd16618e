"""Soft product targets for unlabelled in-domain photos, from a teacher export.

The distillation loss (`TrainConfig.photo_loss_weight`) teaches the trained
model what a stronger model, the teacher, sees in the shop's own photos: no
human label is read. The teacher is any export of `python -m beau_tf.export`
(typically the adapted ensemble of `configs/recommended.flags`). It embeds
the catalogue as the index would (`serving_default`) and each photo as a
query (`query_multiscale`); each photo's target is its row of the balanced
soft assignment of `beau_tf.adaptation.self_training.assign` ("sinkhorn"),
so that a few look-alike products cannot absorb most photos.

Per view (`per_view`), the teacher embeds each of its query views of a photo
(the central crops at its zooms) on its own, and each view gets its own
target: `(N, Z, K)` instead of `(N, K)`, for a photo stream that shows the
student those views (`beau_tf.data.pipelines.make_photo_dataset`).

The targets are computed once per run and kept in the workdir
(`TARGETS_FILE`), so a resumed run trains on the very same targets.
"""

import os
from collections.abc import Sequence
from typing import NamedTuple

from absl import logging
import numpy as np
import tensorflow as tf

from beau_tf.adaptation import self_training
from beau_tf.common import files
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import preprocess

TARGETS_FILE = "photo_targets.npz"


class PhotoTargets(NamedTuple):
    """A run's distillation targets.

    Attributes:
      targets: `(N, K)` float32 rows summing to 1, or `(N, Z, K)` per view.
      paths: the N photos, in row order.
      zooms: the Z zooms of the views, per view; empty otherwise.
    """

    targets: np.ndarray
    paths: list[str]
    zooms: tuple[float, ...] = ()


def _view_crops(images: Sequence[bytes], zooms: Sequence[float]) -> list:
    """Each image's central crops at `zooms`, PNG-encoded (lossless), Z per
    image: one at a time, `serving_default` fits each as `query_multiscale`
    fits that view. An image that cannot be decoded is passed on Z times as
    it is, for the signature to say why."""
    crops = []
    for image in images:
        try:
            pixels = preprocess.decode_pixels(tf.constant(image))
        except tf.errors.InvalidArgumentError:
            crops.extend([image] * len(zooms))
            continue
        crops.extend(
            tf.io.encode_png(preprocess.central_crop(pixels, zoom)).numpy()
            for zoom in zooms
        )
    return crops


def _per_view(
    embed: embedding_lib.EmbedFn, zooms: Sequence[float]
) -> embedding_lib.EmbedFn:
    """`embed` (one view per image) as an `EmbedFn` of `(B, Z * D)` rows:
    each image's views side by side; an image is usable when all are."""
    count = len(zooms)

    def embed_views(images: Sequence[bytes]) -> embedding_lib.EmbeddedBatch:
        views = embed(_view_crops(images, zooms))
        statuses = []
        for start in range(0, len(views.statuses), count):
            bad = [
                status
                for status in views.statuses[start : start + count]
                if status != contract.STATUS_OK
            ]
            statuses.append(bad[0] if bad else contract.STATUS_OK)
        return embedding_lib.EmbeddedBatch(
            embeddings=np.asarray(views.embeddings).reshape(len(images), -1),
            statuses=statuses,
            model_fingerprint=views.model_fingerprint,
            model_version=views.model_version,
        )

    return embed_views


def teacher_targets(
    teacher_dir: str,
    catalogue_paths: Sequence[str],
    photo_paths: Sequence[str],
    temperature: float,
    batch_size: int = 32,
    per_view: bool = False,
) -> tuple[PhotoTargets, str]:
    """Embeds catalogue and photos with the teacher; their soft targets.

    Args:
      teacher_dir: an exported model version folder.
      catalogue_paths: the catalogue images, in label order (column k of the
        targets is the product labelled k).
      photo_paths: the unlabelled photos.
      temperature: softness of the balanced assignment.
      batch_size: images per teacher call.
      per_view: a target for each of the teacher's query views of a photo
        (its zooms, `contract.model_identity`'s "query_zooms"), each view
        embedded on its own, all balanced together.

    Returns:
      `(PhotoTargets of the N photos the teacher could read (with the
      zooms, per view), the teacher's model fingerprint)`. A catalogue
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
    identity = contract.model_identity(teacher_dir)
    zooms = ()
    if per_view:
        zooms = tuple(identity["query_zooms"])
        embed_photos = _per_view(
            embedding_lib.as_embed_fn(signatures[contract.SIGNATURE_NAME]),
            zooms,
        )
    else:
        embed_photos = embedding_lib.as_embed_fn(
            signatures[contract.MULTISCALE_SIGNATURE_NAME]
        )
    photos, kept_photos = embedding_lib.embed_files(
        embed_photos,
        list(photo_paths),
        batch_size=batch_size,
        description="Teacher: unlabelled photos",
    )  # (N, D), or (N, Z * D) per view
    if len(kept_photos) < len(kept_catalogue):
        raise ValueError(
            f"The teacher {teacher_dir} read {len(kept_photos)} photos for "
            f"{len(kept_catalogue)} catalogue images; the distillation loss "
            "needs at least as many photos as products (several per product "
            "is better)."
        )
    rows = photos.reshape(-1, catalogue.shape[1])  # (N or N * Z, D)
    assigned = self_training.assign(
        rows @ catalogue.T, "sinkhorn", temperature
    )  # (rows, K') over the readable products
    targets = np.zeros((len(rows), len(catalogue_paths)), np.float32)
    targets[:, kept_catalogue] = assigned
    if per_view:
        targets = targets.reshape(len(kept_photos), -1, len(catalogue_paths))
    fingerprint = identity.get("model_fingerprint", "")
    paths = [photo_paths[i] for i in kept_photos]
    return PhotoTargets(targets, paths, zooms), fingerprint


def load_or_make(
    workdir: str,
    teacher_dir: str,
    catalogue_paths: Sequence[str],
    photo_paths: Sequence[str],
    temperature: float,
    per_view: bool = False,
) -> PhotoTargets:
    """The run's targets: read from `<workdir>/TARGETS_FILE`, else made
    (`teacher_targets`, `per_view` or not) and kept there atomically.

    Raises:
      ValueError: the kept targets were made for another catalogue size,
        or per view where `per_view` is False (or the other way round).
    """
    path = os.path.join(workdir, TARGETS_FILE)
    if os.path.exists(path):
        with np.load(path) as kept:
            targets, paths = kept["targets"], [str(p) for p in kept["paths"]]
            zooms = tuple(float(z) for z in kept.get("zooms", ()))
        if targets.shape[-1] != len(catalogue_paths):
            raise ValueError(
                f"{path} holds targets over {targets.shape[-1]} products but "
                f"the catalogue has {len(catalogue_paths)}; use a new "
                "--workdir."
            )
        if (targets.ndim == 3) != per_view:
            raise ValueError(
                f"{path} holds targets "
                + ("per view" if targets.ndim == 3 else "per photo")
                + f" but the run asks for them per_view={per_view}; use a "
                "new --workdir."
            )
        logging.info(
            "Distillation targets of %d photos from %s.", len(paths), path
        )
        return PhotoTargets(targets, paths, zooms)
    made, fingerprint = teacher_targets(
        teacher_dir,
        catalogue_paths,
        photo_paths,
        temperature,
        per_view=per_view,
    )
    targets, paths, zooms = made
    confident = float(targets.max(-1).mean())
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
            zooms=np.array(zooms, np.float64),
        )
    return made
