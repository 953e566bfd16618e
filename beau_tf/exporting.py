"""SavedModels for TF Serving: encoded image bytes in, embeddings out.

`export_saved_model` writes

  <export_base>/<model_name>/<version>/saved_model.pb, variables/
  <export_base>/<model_name>/<version>/assets.extra/beau_tf.json

the layout TF Serving watches (it loads the highest integer version). The
`serving_default` signature takes `images`, (B,) tf.string of encoded JPEG,
PNG, GIF, BMP or WebP bytes, decodes them with `beau_tf.preprocess` (the
evaluation's own preprocessing) and returns `embedding` (B, D) float32 of unit
L2 norm and `mask` (B, S, S, 1) float32. The `query_multiscale` signature
takes the same input and returns `embedding`, the normalised mean of the
embeddings of central crops at the model's `query_zooms` (1.0 is the whole
image): for in-the-wild query photos, where the product is often small or one
of many; the catalogue is always embedded with `serving_default`.

A version is written to a hidden temporary folder beside it (TF Serving only
looks at integer names) and renamed into place, so the server never sees half
a model, and an existing version is never overwritten.

beau_tf.json is the model's identity: name, version, embedding size, image
size, a fingerprint of the signature and the members it was built from. The
search index stores it (`model_identity`) and refuses to serve with a model
that does not match.
"""

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from beau_tf import preprocess
from beau_tf import training
from beau_tf.models import ensemble as ensemble_lib

# Registers the extractor's Keras layers, which load_model needs.
import beau_tf.models.extractor  # noqa: F401  pylint: disable=unused-import

IDENTITY_FILE = os.path.join("assets.extra", "beau_tf.json")
SIGNATURE_NAME = "serving_default"
MULTISCALE_SIGNATURE_NAME = "query_multiscale"
INPUT_NAME = "images"
# Measured on GroceryStore val and train photos (bench/RESULTS.md).
DEFAULT_QUERY_ZOOMS = (1.0, 0.75, 0.5)


class _ServingModule(tf.Module):
    """The Keras model behind the bytes-in signatures."""

    def __init__(
        self, model: keras.Model, image_size: int, zooms: tuple[float, ...]
    ):
        super().__init__(name="beau_tf_serving")
        self.model = model
        self._image_size = image_size
        self._zooms = preprocess.check_zooms(zooms)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)]
    )
    def serve(self, images):
        pixels = preprocess.decode_batch(
            images, self._image_size
        )  # (B,) -> (B, S, S, 3)
        outputs = self.model(pixels, training=False)
        return {
            "embedding": tf.cast(outputs["embedding"], tf.float32),
            "mask": tf.cast(outputs["mask"], tf.float32),
        }

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)]
    )
    def serve_multiscale(self, images):
        size, num_zooms = self._image_size, len(self._zooms)
        views = preprocess.decode_batch_zoomed(
            images, size, self._zooms
        )  # (B,) -> (B, Z, S, S, 3)
        outputs = self.model(
            tf.reshape(views, [-1, size, size, 3]), training=False
        )  # (B * Z, S, S, 3) -> {"embedding": (B * Z, D)}
        embeddings = tf.cast(outputs["embedding"], tf.float32)
        embeddings = tf.reshape(
            embeddings, [-1, num_zooms, tf.shape(embeddings)[-1]]
        )  # (B, Z, D)
        mean = tf.reduce_mean(embeddings, axis=1)  # (B, D)
        return {"embedding": tf.math.l2_normalize(mean, axis=-1)}


def signature_fingerprint(signature: Mapping) -> str:
    """sha256 of a signature's names, dtypes and shapes.

    Args:
      signature: `{"inputs": {name: (dtype, shape)}, "outputs": {...}}`, with
        dtype names ("string", "float32") and shapes as lists with None for
        unknown sizes.

    Returns:
      The hex digest of its canonical JSON.
    """
    text = json.dumps(signature, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _describe(spec) -> list:
    return [tf.as_dtype(spec.dtype).name, list(spec.shape.as_list())]


def _next_version(model_dir: str) -> int:
    versions = [
        int(name)
        for name in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
        if name.isdigit()
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


def export_saved_model(
    model: keras.Model,
    image_size: int,
    export_base: str,
    model_name: str,
    version: int | None = None,
    members: Sequence[Mapping] = (),
    query_zooms: Sequence[float] = DEFAULT_QUERY_ZOOMS,
) -> str:
    """Writes `model` as a new version of a TF Serving model.

    Args:
      model: a model with the extractor's interface: "image" (B, S, S, 3)
        pixels in [0, 255] to `{"embedding": (B, D), "mask": (B, S, S, 1)}`
        (an extractor or an ensemble).
      image_size: S, the side the images are decoded to.
      export_base: the folder holding one folder per model name.
      model_name: the model's name (TF Serving's MODEL_NAME).
      version: the version to write; None writes 1 + the highest existing
        integer version (1 for the first).
      members: what the model was built from, recorded in its identity, e.g.
        `[{"workdir": "runs/a", "weight": 1.0}]`.
      query_zooms: the central-crop fractions the `query_multiscale`
        signature averages over.

    Returns:
      The version folder, `<export_base>/<model_name>/<version>`.

    Raises:
      FileExistsError: the version already exists.
      ValueError: for a bad version, model name, image size or zoom, or a
        model whose input is not (B, image_size, image_size, 3).
    """
    query_zooms = preprocess.check_zooms(query_zooms)
    expected = (image_size, image_size, 3)
    if tuple(model.input.shape[1:]) != expected:
        raise ValueError(
            f"Model {model.name} takes images of shape "
            f"{tuple(model.input.shape[1:])}, not {expected}: export it with "
            f"image_size={model.input.shape[1]}."
        )
    version, version_dir = free_version_dir(export_base, model_name, version)
    model_dir = os.path.dirname(version_dir)
    os.makedirs(model_dir, exist_ok=True)

    module = _ServingModule(model, image_size, query_zooms)
    serve = module.serve.get_concrete_function()
    serve_multiscale = module.serve_multiscale.get_concrete_function()
    signature = {
        "inputs": {
            INPUT_NAME: _describe(serve.structured_input_signature[0][0])
        },
        "outputs": {
            name: _describe(tensor)
            for name, tensor in serve.structured_outputs.items()
        },
    }
    identity = {
        "model_name": model_name,
        "model_version": version,
        "signature_name": SIGNATURE_NAME,
        "signature": signature,
        "signature_fingerprint": signature_fingerprint(signature),
        "embedding_dim": signature["outputs"]["embedding"][1][-1],
        "image_size": image_size,
        "query_zooms": list(query_zooms),
        "members": [dict(member) for member in members],
    }

    temporary = os.path.join(
        model_dir, f".tmp-{version}-{os.getpid()}-{secrets.token_hex(4)}"
    )
    try:
        tf.saved_model.save(
            module,
            temporary,
            signatures={
                SIGNATURE_NAME: serve,
                MULTISCALE_SIGNATURE_NAME: serve_multiscale,
            },
        )
        identity_path = os.path.join(temporary, IDENTITY_FILE)
        os.makedirs(os.path.dirname(identity_path), exist_ok=True)
        with open(identity_path, "w") as stream:
            json.dump(identity, stream, indent=2, sort_keys=True)
        if os.path.exists(version_dir):
            raise FileExistsError(
                f"{version_dir} appeared while exporting; versions are never "
                "overwritten."
            )
        try:
            os.rename(temporary, version_dir)
        except OSError as error:  # a non-empty folder took the name meanwhile
            raise FileExistsError(
                f"{version_dir} exists; versions are never overwritten."
            ) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(temporary)
    logging.info(
        "Exported %s version %d (embedding size %d) to %s",
        model_name,
        version,
        identity["embedding_dim"],
        version_dir,
    )
    return version_dir


def model_identity(saved_model_dir: str) -> dict:
    """The identity `export_saved_model` wrote into a version folder.

    Args:
      saved_model_dir: `<export_base>/<model_name>/<version>`.

    Returns:
      `{"model_name", "model_version", "signature_name", "signature",
      "signature_fingerprint", "embedding_dim", "image_size", "query_zooms",
      "members"}`.

    Raises:
      FileNotFoundError: the folder holds no beau_tf.json (not exported by
        `export_saved_model`).
    """
    path = os.path.join(saved_model_dir, IDENTITY_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {saved_model_dir} is not a SavedModel version "
            "written by python -m beau_tf.export."
        )
    with open(path) as stream:
        return json.load(stream)


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
        config = training.load_train_config(workdir)
        path = os.path.join(workdir, training.EXTRACTOR_FILE)
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
) -> tuple[keras.Model, int, list[dict]]:
    """The model to export from training workdirs: one extractor or more.

    Args:
      workdirs: training workdirs (see `beau_tf.training`).
      weights: one weight per workdir; None weighs them equally.
      pca_dim: > 0 adds PCA whitening to this size, learned on the
        embeddings of `pca_paths`.
      pca_paths: catalogue images to learn the whitening on.
      batch_size: batch size for embedding `pca_paths`.

    Returns:
      `(model, image size, members for the identity)`.

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
    return model, image_size, members
