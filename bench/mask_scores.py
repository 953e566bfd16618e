"""How well a predicted mask finds the product: IoU and mass against a true
mask, for the benches that score mask decoders (bench.mask_iou). No flags,
so tests import it beside any command.
"""

import numpy as np
import tensorflow as tf

from beau_tf.serving import contract
from beau_tf.serving import preprocess

_BATCH = 16


def iou(predicted: np.ndarray, true: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are
    empty (they agree)."""
    union = np.count_nonzero(predicted | true)
    if union == 0:
        return 1.0
    return np.count_nonzero(predicted & true) / union


def mask_scores(predicted: np.ndarray, true: np.ndarray) -> dict:
    """How well one predicted mask finds the product.

    Args:
      predicted: (S, S) float in [0, 1], the model's mask.
      true: (S, S) bool, where the product shows.

    Returns:
      `{"IoU@0.5", "IoU@half-peak", "mass inside", "predicted area"}`: IoU
      with `predicted` thresholded at 0.5 and at half its maximum, the share
      of its mass inside `true` (0 for an all-zero mask), and the share of
      the frame at or above 0.5.
    """
    predicted = np.asarray(predicted, np.float32)
    true = np.asarray(true, bool)
    if predicted.shape != true.shape:
        raise ValueError(
            f"predicted mask {predicted.shape} and true mask {true.shape} "
            "differ in shape; fit the true mask to the model's canvas."
        )
    peak = float(predicted.max())
    mass = float(predicted.sum())
    at_half = predicted >= 0.5
    return {
        "IoU@0.5": iou(at_half, true),
        "IoU@half-peak": iou(
            predicted >= 0.5 * peak if peak > 0 else np.zeros_like(true), true
        ),
        "mass inside": float(predicted[true].sum()) / mass if mass > 0 else 0.0,
        "predicted area": float(at_half.mean()),
    }


def fit_true_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A true mask (H, W) bool, placed on the S x S canvas as
    `preprocess.fit_to_square` places its photo: (S, S) bool, a pixel the
    product when at least half of it is; the padding is not product."""
    ones = tf.constant(np.repeat(mask[..., None], 3, -1), tf.float32)
    # fit_to_square pads with grey: the same fit of zeros takes it away.
    fitted = preprocess.fit_to_square(ones, size) - preprocess.fit_to_square(
        tf.zeros_like(ones), size
    )
    return np.asarray(fitted[..., 0]) >= 0.5


def predicted_masks(model_dir: str, paths: list[str]) -> np.ndarray:
    """(N, S, S) float32: `serving_default`'s mask of each photo."""
    serve = tf.saved_model.load(model_dir).signatures[contract.SIGNATURE_NAME]
    masks = []
    for start in range(0, len(paths), _BATCH):
        images = []
        for path in paths[start : start + _BATCH]:
            with open(path, "rb") as stream:
                images.append(stream.read())
        outputs = serve(images=tf.constant(images))
        masks.append(np.asarray(outputs[contract.MASK_OUTPUT])[..., 0])
    return np.concatenate(masks)  # (N, S, S)


def score_masks(predicted: np.ndarray, true: list[np.ndarray]) -> dict:
    """The mean over queries of `mask_scores`."""
    per_query = [mask_scores(p, t) for p, t in zip(predicted, true)]
    return {
        key: float(np.mean([scores[key] for scores in per_query]))
        for key in per_query[0]
    }
