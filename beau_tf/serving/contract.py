"""The serving contract: what an exported beau_tf model promises its clients.

Everything the query path (index, search, evaluate, a TF Serving client) needs
to know about an export, and nothing more; it imports nothing else of beau_tf
(nor TensorFlow), so reading a model's identity costs no model code.

An export version folder `<export_base>/<model_name>/<version>/` holds a
SavedModel with two signatures, both taking `images`, (B,) tf.string of encoded
image bytes:

  serving_default   -> embedding (B, D) float32; mask (B, S, S, 1);
                       status (B,) tf.string; model_fingerprint (B,) tf.string
  query_multiscale  -> embedding (B, D): the normalised mean of the embeddings
                       of central crops at the model's `query_zooms`; status;
                       model_fingerprint

`status` is b"ok" for an image that was embedded, whose embedding row has unit
L2 norm; otherwise it says why the image cannot be used, worded to read after
"the image is" (e.g. "empty (0 bytes)", "not a decodable image (JPEG, PNG,
GIF, BMP or WebP expected)", "3×2 pixels; at least 8 px per side expected"),
and that image's embedding row (and mask) is all zeros. One bad image never
fails a batch.

`model_fingerprint` repeats one value per image (TF Serving's batching needs
a batch axis on every output): the sha256 of everything that determines the
embeddings (every weight of the model, the projection, the query zooms and
the image size), so a client of TF Serving can check that the server embeds
as the model an index was built from, which a name and version alone do not
prove.

`assets.extra/beau_tf.json` is the model's identity (`model_identity`):
name, version, embedding size, image size, query zooms, a fingerprint of the
signature, the model fingerprint and the members it was built from. The
search index stores the identity and refuses a model that does not match.
"""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping

IDENTITY_FILE = os.path.join("assets.extra", "beau_tf.json")
SIGNATURE_NAME = "serving_default"
MULTISCALE_SIGNATURE_NAME = "query_multiscale"
INPUT_NAME = "images"
EMBEDDING_OUTPUT = "embedding"
MASK_OUTPUT = "mask"
STATUS_OUTPUT = "status"
MODEL_FINGERPRINT_OUTPUT = "model_fingerprint"
# The status of an image that was embedded.
STATUS_OK = "ok"
# Measured on GroceryStore val and train photos (bench/RESULTS.md).
DEFAULT_QUERY_ZOOMS = (1.0, 0.75, 0.5)


def check_zooms(zooms: Iterable[float]) -> tuple[float, ...]:
    """`zooms` as a tuple of floats in (0, 1]; ValueError otherwise."""
    zooms = tuple(float(zoom) for zoom in zooms)
    if not zooms or not all(0.0 < zoom <= 1.0 for zoom in zooms):
        raise ValueError(
            f"zooms={list(zooms)} is invalid; expected one or more fractions "
            "in (0, 1], e.g. 1.0,0.75,0.5 (1.0 is the whole image)."
        )
    return zooms


def query_signature(multiscale: bool) -> str:
    """The exported signature that embeds query photos."""
    return MULTISCALE_SIGNATURE_NAME if multiscale else SIGNATURE_NAME


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


def model_identity(saved_model_dir: str) -> dict:
    """The identity written into an export version folder.

    Args:
      saved_model_dir: `<export_base>/<model_name>/<version>`.

    Returns:
      `{"model_name", "model_version", "signature_name", "signature",
      "signature_fingerprint", "model_fingerprint", "embedding_dim",
      "image_size", "query_zooms", "members", "adaptation"}`; exports older
      than the model fingerprint lack "model_fingerprint".

    Raises:
      FileNotFoundError: the folder holds no beau_tf.json (not exported by
        python -m beau_tf.export).
    """
    path = os.path.join(saved_model_dir, IDENTITY_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {saved_model_dir} is not a SavedModel version "
            "written by python -m beau_tf.export."
        )
    with open(path) as stream:
        return json.load(stream)
