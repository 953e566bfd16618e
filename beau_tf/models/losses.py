"""Training losses: the mask loss of the paper, the optional identity loss
and the optional distillation loss on unlabelled photos.

- `mask_mse` supervises `layers.MaskDecoder` with the foreground mask of the
  self-supervised augmentation (mean squared error, as in the paper).
- `build_identity_loss` is keras' sparse categorical cross-entropy on the
  logits of `layers.CosineMarginClassifier`; nothing is rewritten.
- `build_distillation_loss` is keras' categorical cross-entropy on the same
  head's logits for unlabelled photos, against a teacher's soft targets.
- `photo_mask_mse` teaches the mask decoder where the product is in those
  photos, with no label: the target is where the head, cell by cell, sees
  the product the teacher assigned the photo.

All can be passed to `model.compile(loss={...})` and survive a `.keras`
save/load (`mask_mse` is registered as "beau_tf>mask_mse").
"""

import keras
from keras import ops


def _to_rank4(mask):
    """(B, H, W) -> (B, H, W, 1); rank-4 masks pass through."""
    if len(mask.shape) == 3:
        return ops.expand_dims(mask, -1)  # (B, H, W) -> (B, H, W, 1)
    if len(mask.shape) != 4:
        raise ValueError(
            f"masks must be (B, H, W) or (B, H, W, 1); got shape {tuple(mask.shape)}."
        )
    return mask


@keras.saving.register_keras_serializable(package="beau_tf")
def mask_mse(y_true_mask, y_pred_mask):
    """Per-example mean squared error between a target and a predicted mask.

        loss[b] = mean_ijc (resize(y_true)[b, i, j, c] - y_pred[b, i, j, c]) ** 2

    When the target has another spatial size than the prediction it is resized
    to the prediction's size with "area" interpolation: downsampling gives each
    predicted pixel the fraction of its area that is foreground (the value a
    calibrated predictor should output, where "nearest" would pick one sample),
    and upsampling repeats pixels like "nearest". Only the target is resized,
    so no gradient goes through the resize. Both are compared in float32.

    Args:
        y_true_mask: (B, H', W', 1) or (B, H', W') target in [0, 1], any real
            or integer dtype (cast to float32, not rescaled: pass 0/1, not
            0/255).
        y_pred_mask: (B, H, W, 1) or (B, H, W) prediction with a static (H, W)
            when it differs from the target's, e.g. `MaskDecoder`'s output.

    Returns:
        (B,) float32 losses; keras averages them over the batch.

    Raises:
        ValueError: for masks of another rank or a dynamic prediction size that
            must be resized to.
    """
    y_true = ops.cast(_to_rank4(y_true_mask), "float32")
    y_pred = ops.cast(_to_rank4(y_pred_mask), "float32")
    pred_hw = tuple(y_pred.shape[1:3])
    if pred_hw != tuple(y_true.shape[1:3]):
        if None in pred_hw:
            raise ValueError(
                "mask_mse needs a static prediction size to resize the target "
                f"{tuple(y_true.shape)} to; got {tuple(y_pred.shape)}."
            )
        y_true = ops.image.resize(
            y_true, pred_hw, interpolation="area"
        )  # (B, H', W', 1) -> (B, H, W, 1)
    return ops.mean(
        ops.square(y_true - y_pred), axis=(1, 2, 3)
    )  # (B, H, W, 1) -> (B,)


def build_identity_loss(name: str = "identity_loss") -> keras.losses.Loss:
    """Returns the identity (product-classification) loss.

    keras' sparse categorical cross-entropy from logits, for the (B, K) float32
    logits of `CosineMarginClassifier` and (B,) int product labels.

    Args:
        name: the loss name shown in logs.

    Returns:
        A `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.
    """
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, name=name
    )


def build_distillation_loss(
    name: str = "distillation_loss",
) -> keras.losses.Loss:
    """Returns the distillation loss on unlabelled photos.

    keras' categorical cross-entropy from logits, for the (B, K) float32
    `photo_logits` of the identity head (no margin) and (B, K) soft targets
    (rows summing to 1) from `beau_tf.training.photo_targets`.
    """
    return keras.losses.CategoricalCrossentropy(from_logits=True, name=name)


@keras.saving.register_keras_serializable(package="beau_tf")
def photo_mask_mse(teacher_targets, cell_logits_and_mask):
    """The mask decoder's loss on unlabelled photos (self-supervised).

    Each cell (i, j) of a photo's feature map is scored by the identity head
    as if it were the whole photo; the probability it gives the products the
    teacher assigned the photo,

        evidence[b, i, j] = sum_k targets[b, k] * softmax(logits[b, i, j])[k],

    is where the product is (1 on cells the head takes for it, near 0 on
    shelves, hands and other products). The predicted mask, at the feature
    map's size, is pulled towards it by mean squared error, as `mask_mse`
    pulls it towards the augmentation's mask on catalogue scenes. No gradient
    goes into the evidence: it is a target.

    Args:
        teacher_targets: (B, K) the teacher's soft targets (rows sum to 1),
            the distillation loss's targets.
        cell_logits_and_mask: (B, h, w, K + 1): the head's logits of every
            cell, then the predicted mask resized to (h, w), packed into one
            model output (`extractor.build_training_model`'s "photo_mask").

    Returns:
        (B,) float32 losses.
    """
    packed = ops.cast(cell_logits_and_mask, "float32")
    targets = ops.cast(teacher_targets, "float32")
    cell_logits, mask = (
        packed[..., :-1],
        packed[..., -1],
    )  # (B, h, w, K), (B, h, w)
    evidence = ops.sum(
        ops.softmax(cell_logits, axis=-1) * targets[:, None, None, :], axis=-1
    )  # (B, h, w, K) -> (B, h, w)
    evidence = ops.stop_gradient(evidence)
    return ops.mean(ops.square(mask - evidence), axis=(1, 2))  # (B,)
