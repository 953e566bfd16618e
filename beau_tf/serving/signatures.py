"""What the exported signatures do around the model: bytes in, embeddings out.

`Signatures` holds the two signatures of `beau_tf.serving.contract` as
`tf.function`s: decoding and the query views (`beau_tf.serving.preprocess`),
one call of the model on (B, S, S, 3) pixels per kind of view, the mean over
views, the learned projection, and zero rows for unusable images. Only the
model call is a subclass's:

  `beau_tf.serving.saved_model.ServingModule`  calls the Keras model; it is
      what an export saves, and what TF Serving and a local SavedModel run.
  `beau_tf.serving.runtimes.RuntimeSignatures`  calls a converted copy of
      that model (OpenVINO), for the local paths.

So a converted model decodes, cuts views and projects with this one
implementation, and differs from the SavedModel only inside the model call.
"""

import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from beau_tf.serving import contract
from beau_tf.serving import preprocess

# Mask-guided views are cut from the photo fitted into a square this many
# times the model's side, so that a crop of part of it keeps its detail.
MASK_VIEW_SOURCE_SCALE = 2
# Where the projection's variables sit in an export's checkpoint (the
# attributes `Signatures` gives them), for reading them without the model.
PROJECTION_CHECKPOINT_KEYS = (
    "projection_mean/.ATTRIBUTES/VARIABLE_VALUE",
    "projection_matrix/.ATTRIBUTES/VARIABLE_VALUE",
)


class Signatures(tf.Module):
    """The bytes-in signatures around a model call (see the module doc).

    Subclasses implement `call_model`.

    Args:
      image_size: S, the side images are fitted to.
      embedding_dim: D, the size of the model's embeddings.
      zooms: the central-crop fractions of `serve_multiscale`; checked here,
        the one place every path to a signature goes through.
      projection: `(mean (D,), matrix (D, d))` or None: the learned
        in-domain projection; every embedding leaving a signature becomes
        `normalise((e - mean) @ matrix)`, the multiscale one after the mean
        over views.
      mask_views: paddings of `serve_multiscale`'s mask-guided views (see
        `contract.check_mask_views`); empty for none.
      model_fingerprint: the constant `model_fingerprint` output of both
        signatures.
      name: the module's name.
    """

    def __init__(
        self,
        image_size: int,
        embedding_dim: int,
        zooms: Sequence[float],
        projection: tuple[np.ndarray, np.ndarray] | None,
        mask_views: Sequence[float],
        model_fingerprint: str,
        name: str,
    ):
        super().__init__(name=name)
        self._image_size = int(image_size)
        self.zooms = contract.check_zooms(zooms)
        self.mask_views = contract.check_mask_views(mask_views, self.zooms)
        self.projection_mean = self.projection_matrix = None
        if projection is not None:
            mean, matrix = (np.asarray(a, np.float32) for a in projection)
            dim = embedding_dim
            if mean.shape != (dim,) or matrix.ndim != 2 or len(matrix) != dim:
                raise ValueError(
                    f"A projection of shapes {mean.shape} and {matrix.shape} "
                    f"does not fit {dim}-d embeddings; ({dim},) and "
                    f"({dim}, d) expected."
                )
            self.projection_mean = tf.Variable(
                mean, trainable=False, name="projection_mean"
            )
            self.projection_matrix = tf.Variable(
                matrix, trainable=False, name="projection_matrix"
            )
        self.model_fingerprint = model_fingerprint

    def call_model(self, pixels: tf.Tensor) -> Mapping[str, tf.Tensor]:
        """(B, S, S, 3) float32 pixels in [0, 255] -> `{"embedding": (B, D),
        "mask": (B, S, S, 1)}`, inside the signatures' graphs."""
        raise NotImplementedError

    def _project(self, embeddings: tf.Tensor) -> tf.Tensor:
        """(B, D) unit embeddings -> (B, d) unit, adapted ones."""
        if self.projection_matrix is None:
            return embeddings
        projected = tf.matmul(
            embeddings - self.projection_mean, self.projection_matrix
        )  # (B, D) -> (B, d)
        return tf.math.l2_normalize(projected, axis=-1)

    def _outputs(self, embeddings: tf.Tensor, status: tf.Tensor) -> dict:
        """The outputs both signatures share; rows of unusable images zeroed."""
        usable = tf.equal(status, contract.STATUS_OK)  # (B,)
        embeddings = self._project(embeddings)
        return {
            contract.EMBEDDING_OUTPUT: tf.where(
                usable[:, tf.newaxis], embeddings, tf.zeros_like(embeddings)
            ),
            contract.STATUS_OUTPUT: status,
            # (B,), one copy per image: TF Serving's batching splits every
            # output along its first axis and refuses scalars.
            contract.MODEL_FINGERPRINT_OUTPUT: tf.fill(
                tf.shape(status), self.model_fingerprint
            ),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=contract.INPUT_NAME)
        ]
    )
    def serve(self, images):
        pixels, status = preprocess.decode_batch(
            images, self._image_size
        )  # (B,) -> (B, S, S, 3), (B,)
        outputs = self.call_model(pixels)
        embeddings = tf.cast(outputs["embedding"], tf.float32)  # (B, D)
        mask = tf.cast(outputs["mask"], tf.float32)  # (B, S, S, 1)
        usable = tf.equal(status, contract.STATUS_OK)
        return {
            **self._outputs(embeddings, status),
            contract.MASK_OUTPUT: tf.where(
                usable[:, tf.newaxis, tf.newaxis, tf.newaxis],
                mask,
                tf.zeros_like(mask),
            ),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=contract.INPUT_NAME)
        ]
    )
    def serve_multiscale(self, images):
        size, num_zooms = self._image_size, len(self.zooms)
        if self.mask_views:
            views, sources, status = preprocess.decode_batch_for_mask_views(
                images, size, self.zooms, MASK_VIEW_SOURCE_SCALE * size
            )  # (B,) -> (B, Z, S, S, 3), (B, C, C, 3), (B,)
        else:
            views, status = preprocess.decode_batch_zoomed(
                images, size, self.zooms
            )  # (B,) -> (B, Z, S, S, 3), (B,)
        outputs = self.call_model(
            tf.reshape(views, [-1, size, size, 3])
        )  # (B * Z, S, S, 3) -> {"embedding": (B * Z, D), "mask"}
        embeddings = tf.cast(outputs["embedding"], tf.float32)
        dim = tf.shape(embeddings)[-1]
        embeddings = tf.reshape(embeddings, [-1, num_zooms, dim])  # (B, Z, D)
        boxes = tf.zeros([tf.shape(images)[0], 0, 4], tf.float32)
        if self.mask_views:
            masks = tf.reshape(
                tf.cast(outputs["mask"], tf.float32),
                [-1, num_zooms, size, size],
            )[
                :, self.zooms.index(1.0)
            ]  # (B, S, S): the whole photo's mask
            boxes = preprocess.mask_boxes(masks, self.mask_views)  # (B, P, 4)
            crops = preprocess.crop_views(sources, boxes, size)
            cropped = self.call_model(tf.reshape(crops, [-1, size, size, 3]))[
                "embedding"
            ]  # (B * P, S, S, 3) -> (B * P, D)
            embeddings = tf.concat(
                [
                    embeddings,
                    tf.reshape(
                        tf.cast(cropped, tf.float32),
                        [-1, len(self.mask_views), dim],
                    ),
                ],
                axis=1,
            )  # (B, Z + P, D)
        mean = tf.math.l2_normalize(
            tf.reduce_mean(embeddings, axis=1), axis=-1
        )  # (B, D)
        return {
            **self._outputs(mean, status),
            contract.VIEW_BOXES_OUTPUT: boxes,
        }


def read_projection(
    saved_model_dir: str,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The projection an export's signatures apply, read from its
    checkpoint without loading the model: `(mean, matrix)`, or None."""
    reader = tf.train.load_checkpoint(
        os.path.join(saved_model_dir, "variables", "variables")
    )
    if not all(reader.has_tensor(key) for key in PROJECTION_CHECKPOINT_KEYS):
        return None
    mean, matrix = (reader.get_tensor(k) for k in PROJECTION_CHECKPOINT_KEYS)
    return mean, matrix
