"""Writes a model as a TF Serving SavedModel version: bytes in, embeddings out.

`export_saved_model` writes

  <export_base>/<model_name>/<version>/saved_model.pb, variables/
  <export_base>/<model_name>/<version>/assets.extra/beau_tf.json

the layout TF Serving watches (it loads the highest integer version), with the
signatures and identity that `beau_tf.serving.contract` describes. Images are
decoded inside the signatures by `beau_tf.serving.preprocess`, the evaluation's
own preprocessing; an image that cannot be used gets a zero embedding and a
status saying why, and never fails its batch (`beau_tf.serving.signatures`).
Beside the signatures the module carries `embed_pixels`, the Keras model call
alone, which `python -m beau_tf.convert` converts for another runtime
(`beau_tf.serving.runtimes`); the converted copies live under
`assets.extra/runtimes/`, which TF Serving does not read.

A version is written to a hidden temporary folder beside it (TF Serving only
looks at integer names) and renamed into place, so the server never sees half
a model, and an existing version is never overwritten.
"""

import hashlib
import json
import os
from collections.abc import Mapping, Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from beau_tf.common import files
from beau_tf.serving import contract
from beau_tf.serving import signatures
from beau_tf.serving import trust

# The export's model call alone, saved beside the signatures (TF Serving
# serves only signatures): (B, S, S, 3) float32 pixels in [0, 255] ->
# {"embedding", "mask"}; what `beau_tf.serving.conversion` converts.
PIXELS_FUNCTION = "embed_pixels"


class ServingModule(signatures.Signatures):
    """The Keras model behind the bytes-in signatures.

    Its two functions are the exported signatures; the adaptation step also
    calls them in-process, so what it learns from is what is served. It also
    carries `embed_pixels`, the model call alone.

    Args:
      model: a model with the extractor's interface (see
        `export_saved_model`).
      zooms: the central-crop fractions of `serve_multiscale`.
      projection: `(mean (D,), matrix (D, d))` or None: the learned
        in-domain projection (see `signatures.Signatures`).
      mask_views: paddings of `serve_multiscale`'s mask-guided views (see
        `contract.check_mask_views`); empty for none.

    Attributes:
      model_fingerprint: `model_fingerprint(...)` of what it serves, the
        constant `model_fingerprint` output of both signatures.
    """

    def __init__(
        self,
        model: keras.Model,
        zooms: Sequence[float],
        projection: tuple[np.ndarray, np.ndarray] | None = None,
        mask_views: Sequence[float] = (),
    ):
        image_size = image_size_of(model)
        zooms = contract.check_zooms(zooms)
        mask_views = contract.check_mask_views(mask_views, zooms)
        super().__init__(
            image_size=image_size,
            embedding_dim=model.output["embedding"].shape[-1],
            zooms=zooms,
            projection=projection,
            mask_views=mask_views,
            model_fingerprint=model_fingerprint(
                model, image_size, zooms, projection, mask_views
            ),
            name="beau_tf_serving",
        )
        self.model = model
        setattr(
            self,
            PIXELS_FUNCTION,
            tf.function(
                self.call_model,
                input_signature=[
                    tf.TensorSpec(
                        [None, image_size, image_size, 3],
                        tf.float32,
                        name="pixels",
                    )
                ],
            ),
        )

    def call_model(self, pixels: tf.Tensor) -> dict:
        outputs = self.model(pixels, training=False)
        return {"embedding": outputs["embedding"], "mask": outputs["mask"]}


def model_fingerprint(
    model: keras.Model,
    image_size: int,
    zooms: Sequence[float],
    projection: tuple[np.ndarray, np.ndarray] | None = None,
    mask_views: Sequence[float] = (),
) -> str:
    """sha256 of everything that determines a served model's embeddings.

    Every weight of `model` (values, shapes and dtypes, in the model's
    order), the projection, the query zooms, the mask views and the image
    size; two exports share a fingerprint only when they embed alike. Weight names are left
    out: they hold counters that differ between equal models built twice.

    Args:
      model: the exported model.
      image_size: S, the side images are fitted to.
      zooms: the `query_multiscale` signature's zooms.
      projection: `(mean, matrix)` of the in-domain projection, or None.
      mask_views: the `query_multiscale` signature's mask-view paddings.

    Returns:
      The hex digest.
    """
    digest = hashlib.sha256()
    settings = {
        "image_size": int(image_size),
        "query_zooms": [float(zoom) for zoom in zooms],
        "projection": projection is not None,
    }
    if mask_views:  # absent otherwise, so earlier exports keep their digest
        settings["query_mask_views"] = [float(pad) for pad in mask_views]
    digest.update(json.dumps(settings, sort_keys=True).encode("utf-8"))
    arrays = [weight.numpy() for weight in model.weights]
    if projection is not None:
        arrays += [np.asarray(array, np.float32) for array in projection]
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode("utf-8"))
        digest.update(array.tobytes())
    return digest.hexdigest()


def _describe(spec) -> list:
    return [tf.as_dtype(spec.dtype).name, list(spec.shape.as_list())]


def _next_version(model_dir: str) -> int:
    versions = [
        int(name)
        for name in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
        if name.isascii() and name.isdigit()
    ]
    return max(versions, default=0) + 1


def free_version_dir(
    export_base: str, model_name: str, version: int | None = None
) -> tuple[int, str]:
    """The version to write and its folder, checked to be free.

    Args:
      export_base: the folder holding one folder per model name.
      model_name: the model's name (TF Serving's MODEL_NAME).
      version: the version wanted; None: 1 + the highest existing integer
        version (1 for the first).

    Returns:
      `(version, <export_base>/<model_name>/<version>)`.

    Raises:
      FileExistsError: the version already exists.
      ValueError: for a bad model name or version.
    """
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(
            f"model_name={model_name!r}; a plain folder name expected "
            "(TF Serving's MODEL_NAME)."
        )
    model_dir = os.path.join(export_base, model_name)
    if version is None:
        version = _next_version(model_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version={version!r}; a positive integer expected.")
    version_dir = os.path.join(model_dir, str(version))
    if os.path.exists(version_dir):
        raise FileExistsError(
            f"{version_dir} exists; versions are never overwritten: pick "
            "another --version or leave it unset for the next free one."
        )
    return version, version_dir


def image_size_of(model: keras.Model) -> int:
    """S of a model that takes (B, S, S, 3) images; ValueError otherwise."""
    shape = tuple(model.input.shape[1:])
    if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1] or not shape[0]:
        raise ValueError(
            f"Model {model.name} takes images of shape {shape}; a fixed "
            "square RGB input (S, S, 3) is needed to export it."
        )
    return int(shape[0])


def export_saved_model(
    model: keras.Model,
    export_base: str,
    model_name: str,
    version: int | None = None,
    members: Sequence[Mapping] = (),
    query_zooms: Sequence[float] = contract.DEFAULT_QUERY_ZOOMS,
    projection: tuple[np.ndarray, np.ndarray] | None = None,
    adaptation: Mapping | None = None,
    query_mask_views: Sequence[float] = (),
) -> str:
    """Writes `model` as a new version of a TF Serving model.

    Args:
      model: a model with the extractor's interface: "image" (B, S, S, 3)
        pixels in [0, 255] to `{"embedding": (B, D), "mask": (B, S, S, 1)}`
        (an extractor or an ensemble); images are decoded to its S.
      export_base: the folder holding one folder per model name.
      model_name: the model's name (TF Serving's MODEL_NAME).
      version: the version to write; None writes 1 + the highest existing
        integer version (1 for the first).
      members: what the model was built from, recorded in its identity, e.g.
        `[{"workdir": "runs/a", "weight": 1.0}]`.
      query_zooms: the central-crop fractions the `query_multiscale`
        signature averages over.
      projection: `(mean, matrix)` of a learned in-domain projection baked
        into both signatures (see `ServingModule`), or None.
      adaptation: what the projection was learned from, recorded in the
        identity under "adaptation" (see `beau_tf.adaptation`).
      query_mask_views: paddings of the `query_multiscale` signature's
        mask-guided views (`contract.check_mask_views`); needs a model whose
        mask decoder was trained.

    Returns:
      The version folder, `<export_base>/<model_name>/<version>`.

    Raises:
      FileExistsError: the version already exists.
      ValueError: for a bad version, model name or zoom, or a model whose
        input is not (B, S, S, 3).
    """
    image_size = image_size_of(model)
    module = ServingModule(
        model, query_zooms, projection, query_mask_views
    )  # checks them
    version, version_dir = free_version_dir(export_base, model_name, version)
    model_dir = os.path.dirname(version_dir)
    os.makedirs(model_dir, exist_ok=True)

    serve = module.serve.get_concrete_function()
    serve_multiscale = module.serve_multiscale.get_concrete_function()
    # Saved as a function of the module, not a signature: TF Serving never
    # sees it; a conversion to another runtime reads it.
    getattr(module, PIXELS_FUNCTION).get_concrete_function()
    signature = {
        "inputs": {
            contract.INPUT_NAME: _describe(
                serve.structured_input_signature[0][0]
            )
        },
        "outputs": {
            name: _describe(tensor)
            for name, tensor in serve.structured_outputs.items()
        },
    }
    identity = {
        "model_name": model_name,
        "model_version": version,
        "signature_name": contract.SIGNATURE_NAME,
        "signature": signature,
        "signature_fingerprint": contract.signature_fingerprint(signature),
        "model_fingerprint": module.model_fingerprint,
        "embedding_dim": signature["outputs"]["embedding"][1][-1],
        "image_size": image_size,
        "query_zooms": list(module.zooms),
        "query_mask_views": list(module.mask_views),
        "members": [dict(member) for member in members],
        "adaptation": dict(adaptation) if adaptation is not None else None,
    }

    with files.staged_folder(version_dir) as staging:
        tf.saved_model.save(
            module,
            staging,
            signatures={
                contract.SIGNATURE_NAME: serve,
                contract.MULTISCALE_SIGNATURE_NAME: serve_multiscale,
            },
        )
        # Recomputed from the files at every load (serving.trust).
        identity[trust.WEIGHTS_FINGERPRINT] = trust.weights_fingerprint(staging)
        identity_path = os.path.join(staging, contract.IDENTITY_FILE)
        os.makedirs(os.path.dirname(identity_path), exist_ok=True)
        with open(identity_path, "w") as stream:
            json.dump(identity, stream, indent=2, sort_keys=True)
    logging.info(
        "Exported %s version %d (embedding size %d) to %s",
        model_name,
        version,
        identity["embedding_dim"],
        version_dir,
    )
    return version_dir
