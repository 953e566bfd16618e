"""Converts an export's model call for OpenVINO, checked before it is kept.

`convert` reads the export's `embed_pixels` function (the Keras model call
alone, `beau_tf.serving.saved_model`), converts it with OpenVINO's
TensorFlow front end, quantises it to int8 for "openvino-int8" (NNCF's
post-training quantisation, calibrated on catalogue images decoded as the
signatures decode them), and compares the two signatures run around the copy
(`runtimes.RuntimeSignatures`) with the SavedModel's on real images: every
image must keep its status, and the cosine similarity of its embedding to
the SavedModel's must be at least the runtime's `least_cosine`, their mean
at least its `mean_cosine`. Only then is the copy
written into the export folder (`runtimes.converted_dir`), with a manifest
of the export it came from, what was measured and the sha256 of its files.

OpenVINO and NNCF are imported here only; see `beau_tf.serving.runtimes`.
"""

import dataclasses
import datetime
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from beau_tf.common import files
from beau_tf.data import decode
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import preprocess
from beau_tf.serving import runtimes
from beau_tf.serving import saved_model
from beau_tf.serving import signatures


class ConversionCheckError(ValueError):
    """The converted model does not embed as the SavedModel does; nothing
    was written. The message gives the measured similarities."""


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """How closely a converted model embeds as the SavedModel, per signature.

    Attributes:
      min_cosine: signature -> the least cosine similarity over the images.
      mean_cosine: signature -> the mean.
      max_mask_difference: the largest absolute difference of the
        `serving_default` masks (recorded; not held to a bound).
      num_images: usable images compared.
    """

    min_cosine: dict[str, float]
    mean_cosine: dict[str, float]
    max_mask_difference: float
    num_images: int


def _scale_and_translate(node):
    """TensorFlow's ScaleAndTranslate (what `tf.image.resize(...,
    antialias=True)` runs, in the mask decoder and attention pooling) as
    OpenVINO's Interpolate: "bilinear_pillow" is the same triangle filter,
    widened when downscaling; the conversion check compares the result."""
    from openvino import opset13  # pylint: disable=g-import-not-at-top

    kernel = node.get_attribute("kernel_type")
    if kernel != "triangle":
        raise ValueError(
            f"ScaleAndTranslate with kernel {kernel!r} has no OpenVINO "
            "equivalent here (bilinear resizing, kernel 'triangle', has)."
        )
    resized = opset13.interpolate(
        node.get_input(0),  # (B, h, w, C)
        node.get_input(1),  # (2,) the new (H, W)
        mode="bilinear_pillow" if node.get_attribute("antialias") else "linear",
        shape_calculation_mode="sizes",
        coordinate_transformation_mode="half_pixel",
        axes=np.array([1, 2], np.int64),
    )  # (B, H, W, C)
    return [resized.output(0)]


def pixels_function(loaded, model_dir: str):
    """The model call of a loaded export, as a concrete function: "pixels"
    (B, S, S, 3) float32 -> {"embedding", "mask"}. It holds `loaded`'s
    variables only while `loaded` lives.

    Raises:
      ValueError: the export has no such function (exported before
        conversions existed).
    """
    function = getattr(loaded, saved_model.PIXELS_FUNCTION, None)
    if function is None:
        raise ValueError(
            f"{model_dir} has no {saved_model.PIXELS_FUNCTION} function, "
            "the model call a conversion reads: it was exported by an older "
            "beau_tf. Export it again (python -m beau_tf.export, a new "
            "version) and convert that."
        )
    return function.get_concrete_function()


def to_openvino(model_dir: str):
    """The export's model call as an `openvino.Model` (float32)."""
    import openvino  # pylint: disable=g-import-not-at-top
    from openvino.frontend import (  # pylint: disable=g-import-not-at-top
        ConversionExtension,
    )

    loaded = tf.saved_model.load(model_dir)  # alive while converting
    return openvino.convert_model(
        pixels_function(loaded, model_dir),
        # A copy: shared weights would be freed with `loaded`.
        share_weights=False,
        extension=[
            ConversionExtension("ScaleAndTranslate", _scale_and_translate)
        ],
    )


def read_images(paths: Sequence[str]) -> tuple[list[bytes], list[str]]:
    """`(bytes, paths)` of the files that can be read for the model (as
    `beau_tf.serving.embedding` reads them); the others are skipped with a
    warning."""
    images, kept = [], []
    for path in paths:
        try:
            images.append(decode.read_for_model(path))
            kept.append(path)
        except (decode.ImageDecodeError, OSError) as error:
            logging.warning("Skipped: %s", error)
    return images, kept


def calibration_pixels(
    images: Sequence[bytes], image_size: int
) -> list[np.ndarray]:
    """Each usable image as (1, S, S, 3) pixels, decoded and fitted as the
    signatures do (`preprocess.decode_batch`)."""
    batches = []
    for start in range(0, len(images), 32):
        pixels, status = preprocess.decode_batch(
            tf.constant(list(images[start : start + 32])), image_size
        )  # (B, S, S, 3), (B,)
        usable = status.numpy() == contract.STATUS_OK.encode()
        batches.extend(p[np.newaxis] for p in pixels.numpy()[usable])
    return batches


def quantize(model, pixels: Sequence[np.ndarray]):
    """`model` quantised to int8 by NNCF, calibrated on `pixels` ((1, S, S,
    3) arrays)."""
    import nncf  # pylint: disable=g-import-not-at-top

    return nncf.quantize(
        model, nncf.Dataset(list(pixels)), subset_size=len(pixels)
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
    )


def compare(
    reference: Mapping,
    converted: runtimes.RuntimeSignatures,
    images,
    batch_size=16,
) -> CheckResult:
    """Embeds `images` with both, every signature; compares them.

    Args:
      reference: the SavedModel's signatures, by name
        (`embedding.load_signatures(model_dir, contract.QUERY_SIGNATURES)`).
      converted: the signatures around the converted model call.
      images: encoded images.
      batch_size: images per call.

    Raises:
      ConversionCheckError: a status differs (the decoding is shared, so it
        never should), or no image is usable.
    """
    functions = {
        contract.SIGNATURE_NAME: converted.serve,
        contract.MULTISCALE_SIGNATURE_NAME: converted.serve_multiscale,
    }
    cosines = {name: [] for name in functions}
    mask_difference = 0.0
    for start in range(0, len(images), batch_size):
        batch = tf.constant(list(images[start : start + batch_size]))
        for name, function in functions.items():
            want = reference[name](images=batch)
            got = function(images=batch)
            statuses = want[contract.STATUS_OUTPUT].numpy()
            if list(got[contract.STATUS_OUTPUT].numpy()) != list(statuses):
                raise ConversionCheckError(
                    f"The converted {name} answered statuses "
                    f"{got[contract.STATUS_OUTPUT].numpy()}, the SavedModel "
                    f"{statuses}."
                )
            usable = statuses == contract.STATUS_OK.encode()
            cosines[name].append(
                _cosines(
                    want[contract.EMBEDDING_OUTPUT].numpy()[usable],
                    got[contract.EMBEDDING_OUTPUT].numpy()[usable],
                )
            )
            if contract.MASK_OUTPUT in want:
                difference = np.abs(
                    want[contract.MASK_OUTPUT].numpy()
                    - got[contract.MASK_OUTPUT].numpy()
                )
                mask_difference = max(mask_difference, float(difference.max()))
    joined = {name: np.concatenate(c) for name, c in cosines.items()}
    if not len(joined[contract.SIGNATURE_NAME]):
        raise ConversionCheckError("None of the check images is usable.")
    return CheckResult(
        min_cosine={n: float(c.min()) for n, c in joined.items()},
        mean_cosine={n: float(c.mean()) for n, c in joined.items()},
        max_mask_difference=mask_difference,
        num_images=len(joined[contract.SIGNATURE_NAME]),
    )


def split_images(
    sources: Sequence[Sequence[str]],
    num_check: int,
    num_calibration: int,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """`(check, calibration)` paths: from each source (the catalogue,
    unlabelled photos) a seeded sample of `num_check` and of
    `num_calibration`, disjoint when it has enough, else the check images
    are also calibration ones."""
    check, calibration = [], []
    for paths in sources:
        order = np.random.default_rng(seed).permutation(len(paths))
        shuffled = [paths[i] for i in order]
        calibration += shuffled[:num_calibration]
        rest = shuffled[num_calibration:]
        check += (rest or shuffled)[:num_check]
    return check, calibration


def convert(
    model_dir: str,
    runtime: str,
    check_paths: Sequence[str],
    calibration_paths: Sequence[str] = (),
    least_cosine: float | None = None,
    mean_cosine: float | None = None,
    source: str | None = None,
) -> str:
    """Converts `model_dir`'s model call for `runtime`, checks it and writes
    it into the export folder.

    Args:
      model_dir: an export version folder.
      runtime: one of `runtimes.RUNTIMES`.
      check_paths: real images the copy is compared on.
      calibration_paths: catalogue images the int8 quantisation is
        calibrated on (required for "openvino-int8", unused otherwise).
      least_cosine: the least cosine per image and signature accepted;
        default the runtime's.
      mean_cosine: the least mean cosine per signature accepted; default
        the runtime's.
      source: where the images were listed from, for the manifest.

    Returns:
      The folder written, `runtimes.converted_dir(model_dir, runtime)`.

    Raises:
      runtimes.RuntimeNotInstalledError: OpenVINO (or NNCF) is missing.
      FileExistsError: the copy exists already.
      ValueError: an unknown runtime, int8 without calibration images, or
        an export without a model fingerprint or `embed_pixels`.
      ConversionCheckError: the copy does not embed as the SavedModel.
    """
    if runtimes.check_name(runtime) == runtimes.TENSORFLOW:
        raise ValueError("tensorflow runs the SavedModel: nothing to convert.")
    settings = runtimes.RUNTIMES[runtime]
    int8 = settings.weights == "int8"
    runtimes.require_installed(runtime)
    if int8 and importlib.util.find_spec("nncf") is None:
        raise runtimes.RuntimeNotInstalledError(
            f"runtime {runtime} is quantised by NNCF, which is not "
            f"installed: {runtimes.INSTALL_HINT}"
        )
    target = runtimes.converted_dir(model_dir, runtime)
    if os.path.exists(target):
        raise FileExistsError(
            f"{target} exists; converted copies are never overwritten: "
            "remove it to convert again."
        )
    if int8 and not calibration_paths:
        raise ValueError(f"runtime {runtime} needs calibration images.")
    identity = contract.model_identity(model_dir)
    if least_cosine is None:
        least_cosine = settings.least_cosine
    if mean_cosine is None:
        mean_cosine = settings.mean_cosine

    import openvino  # pylint: disable=g-import-not-at-top

    model = to_openvino(model_dir)
    calibration = []
    if int8:
        images, _ = read_images(calibration_paths)
        calibration = calibration_pixels(images, identity["image_size"])
        logging.info("Quantising on %d catalogue images", len(calibration))
        model = quantize(model, calibration)
    converted = runtimes.RuntimeSignatures(
        runtimes.compile_model(model, runtime),
        identity,
        signatures.read_projection(model_dir),
    )
    check_images, _ = read_images(check_paths)
    reference = embedding_lib.load_signatures(
        model_dir, contract.QUERY_SIGNATURES
    )
    result = compare(reference, converted, check_images)
    logging.info(
        "%s against the SavedModel on %d images: least cosine %s",
        settings.description,
        result.num_images,
        result.min_cosine,
    )
    failed = [
        f"{name}: least {result.min_cosine[name]:.4f}, mean "
        f"{result.mean_cosine[name]:.4f}"
        for name in result.min_cosine
        if result.min_cosine[name] < least_cosine
        or result.mean_cosine[name] < mean_cosine
    ]
    if failed:
        raise ConversionCheckError(
            f"The {settings.description} copy of {model_dir} embeds "
            f"{result.num_images} images with cosine similarities to the "
            f"SavedModel's of {'; '.join(failed)}, below the least "
            f"{least_cosine} or the mean {mean_cosine} required; nothing was "
            "written. Keep --runtime=tensorflow"
            + (
                ", or calibrate on more images (unlabelled photos too)."
                if int8
                else "."
            )
        )
    manifest = {
        "runtime": runtime,
        "source": runtimes.source_of(identity),
        "weights": settings.weights,
        "inference_precision": settings.inference_precision,
        "check": {
            "images_from": source,
            "least_cosine_required": least_cosine,
            "mean_cosine_required": mean_cosine,
            **dataclasses.asdict(result),
        },
        "calibration": (
            {"num_images": len(calibration), "images_from": source}
            if int8
            else None
        ),
        "versions": _versions(int8),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    with files.staged_folder(target) as staging:
        openvino.save_model(
            model,
            os.path.join(staging, runtimes.MODEL_FILE),
            compress_to_fp16=False,
        )
        manifest["files"] = {
            name: files.file_sha256(os.path.join(staging, name))
            for name in (runtimes.MODEL_FILE, runtimes.WEIGHTS_FILE)
        }
        with open(os.path.join(staging, runtimes.MANIFEST_FILE), "w") as out:
            json.dump(manifest, out, indent=2, sort_keys=True)
    logging.info("Wrote %s", target)
    return target


def _versions(int8: bool) -> Mapping[str, str]:
    import openvino  # pylint: disable=g-import-not-at-top

    versions = {
        "openvino": openvino.__version__,
        "tensorflow": tf.__version__,
    }
    if int8:
        import nncf  # pylint: disable=g-import-not-at-top

        versions["nncf"] = nncf.__version__
    return versions
