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
                       of several views of each photo: central crops at the
                       model's `query_zooms`, then, when the export has
                       `query_mask_views`, square crops around the product
                       its mask decoder finds on the whole photo, one per
                       padding; status; model_fingerprint; view_boxes
                       (B, P, 4) float32: the P mask-guided crops as
                       (y0, x0, y1, x1) fractions of the square the photo
                       is fitted into (P = 0 without mask views)

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
name, version, embedding size, image size, query zooms and mask views (an
export older than mask views lacks "query_mask_views"), a fingerprint of the
signature, the model fingerprint and the members it was built from. The
search index stores the identity and refuses a model that does not match.

Which models may embed for an index is decided here, once, for every path
(a local export or TF Serving, a command line or the search service), and
each refusal raises `IncompatibleModelError` with one message:

  - `check_compatible`: the model's name, version, signature fingerprint,
    model fingerprint and embedding size must be the index's. An index and
    an export from before the model fingerprint (an older beau_tf), both
    without one, match each other. An index that recorded the weights
    fingerprint (the sha256 of the export's variables, recomputed from
    its files whenever it loads: `beau_tf.serving.trust`) also needs the
    model's to be the same.
  - `fingerprint_to_hold`: answers are held to the index's model
    fingerprint, so an index recorded without one (an older beau_tf's
    export) cannot vouch for any model's answers and is refused.
  - `check_answer`: every answer's version (where it names one) and model
    fingerprint must be the index's; a model re-exported under the same name
    and version answers with another fingerprint.
  - `check_outputs`: a signature must return `QUERY_OUTPUTS`; one without
    the status and the model fingerprint was exported by an older beau_tf.
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
VIEW_BOXES_OUTPUT = "view_boxes"
# The status of an image that was embedded.
STATUS_OK = "ok"
# Measured on GroceryStore val and train photos (bench/RESULTS.md).
DEFAULT_QUERY_ZOOMS = (1.0, 0.75, 0.5)
# A mask-guided view is the square around the mask's pixels of at least
# this fraction of its peak, widened by the view's padding (a fraction of its
# side), at least `MASK_VIEW_MIN_SIDE` of the photo's square; a mask whose
# peak is below `MASK_VIEW_MIN_PEAK` finds nothing, and the view is the whole
# photo.
MASK_VIEW_THRESHOLD = 0.5
MASK_VIEW_MIN_SIDE = 0.25
MASK_VIEW_MIN_PEAK = 0.05
# The signatures that embed query photos (see `query_signature`).
QUERY_SIGNATURES = (SIGNATURE_NAME, MULTISCALE_SIGNATURE_NAME)
# What a client reads of a signature's answer; an older beau_tf's exports
# lack the last two.
QUERY_OUTPUTS = (EMBEDDING_OUTPUT, STATUS_OUTPUT, MODEL_FINGERPRINT_OUTPUT)
# What must agree between the model an index was built with and the model
# embedding its queries (`check_compatible`).
COMPATIBILITY_KEYS = (
    "model_name",
    "model_version",
    "signature_fingerprint",
    "model_fingerprint",
    "embedding_dim",
)
# Why a signature lacks the status and the model fingerprint, and what to do.
OLDER_EXPORT_HINT = (
    "exported by an older beau_tf; re-export it with python -m beau_tf.export"
)
REBUILD_HINT = "rebuild the index with python -m beau_tf.index"
# The sha256 of the export's variables (`beau_tf.serving.trust`).
WEIGHTS_FINGERPRINT = "weights_fingerprint"


class IncompatibleModelError(ValueError):
    """A model other than the one an index was built with, or one that
    cannot be checked against it; the message names both and what to do."""


def check_zooms(zooms: Iterable[float]) -> tuple[float, ...]:
    """`zooms` as a tuple of floats in (0, 1]; ValueError otherwise."""
    zooms = tuple(float(zoom) for zoom in zooms)
    if not zooms or not all(0.0 < zoom <= 1.0 for zoom in zooms):
        raise ValueError(
            f"zooms={list(zooms)} is invalid; expected one or more fractions "
            "in (0, 1], e.g. 1.0,0.75,0.5 (1.0 is the whole image)."
        )
    return zooms


def check_mask_views(pads: Iterable[float], zooms: Iterable[float]) -> tuple:
    """Mask-view paddings as a tuple of floats in [0, 4]; ValueError otherwise.

    Mask views crop around what the mask decoder finds on the whole photo,
    so the zooms must include 1.0 (the whole photo) when there are any.
    """
    pads = tuple(float(pad) for pad in pads)
    if not all(0.0 <= pad <= 4.0 for pad in pads):
        raise ValueError(
            f"mask view paddings {list(pads)} are invalid; expected fractions "
            "of the box side in [0, 4], e.g. 0.25 (a quarter wider)."
        )
    if pads and 1.0 not in tuple(zooms):
        raise ValueError(
            f"mask views {list(pads)} need the zoom 1.0 (the whole photo, "
            f"where the mask is predicted) among the zooms {list(zooms)}."
        )
    return pads


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


def _short(fingerprint) -> str:
    text = str(fingerprint)
    return text if len(text) <= 12 else text[:12] + "…"


def _describe(identity: Mapping) -> str:
    """ "model m version 3 (signature 1a2b…, model fingerprint 3c4d…, 256-d
    embeddings)"."""
    fingerprint = identity.get(MODEL_FINGERPRINT_OUTPUT)
    weights = (
        f"model fingerprint {_short(fingerprint)}"
        if fingerprint
        else "no model fingerprint"
    )
    return (
        f"model {identity.get('model_name')} version "
        f"{identity.get('model_version')} (signature "
        f"{_short(identity.get('signature_fingerprint'))}, {weights}, "
        f"{identity.get('embedding_dim')}-d embeddings)"
    )


def check_compatible(
    built: Mapping, model: Mapping, index_name: str = "the index"
) -> None:
    """Refuses a model other than the one an index was built with.

    Args:
      built: the identity the index recorded (`model_identity`).
      model: the identity of the model that would embed its queries.
      index_name: the index, as messages name it ("index indexes/v1").

    Raises:
      IncompatibleModelError: naming both models when any of
        `COMPATIBILITY_KEYS` differ (an index without a model fingerprint
        accepts only a model without one).
    """
    differ = [
        key for key in COMPATIBILITY_KEYS if built.get(key) != model.get(key)
    ]
    # An index built since exports record their weights holds the model to
    # them (checked against the files when the model loads); an older
    # index cannot.
    if built.get(WEIGHTS_FINGERPRINT) and built.get(
        WEIGHTS_FINGERPRINT
    ) != model.get(WEIGHTS_FINGERPRINT):
        differ.append(WEIGHTS_FINGERPRINT)
    if differ:
        raise IncompatibleModelError(
            f"{index_name} was built with {_describe(built)}, but the model "
            f"given is {_describe(model)} (differs in {', '.join(differ)}); "
            f"{REBUILD_HINT}."
        )


def fingerprint_to_hold(
    built: Mapping, source: str, index_name: str = "the index"
) -> str:
    """The model fingerprint every answer of `source` must carry.

    Args:
      built: the identity the index recorded.
      source: what answers ("TF Serving at localhost:8500").
      index_name: the index, as messages name it.

    Raises:
      IncompatibleModelError: `built` has no model fingerprint (an index
        built from an older beau_tf's export), so no answer can be checked.
    """
    fingerprint = built.get(MODEL_FINGERPRINT_OUTPUT)
    if not fingerprint:
        raise IncompatibleModelError(
            f"{index_name} was built from {built.get('model_name')} version "
            f"{built.get('model_version')} exported without a model "
            "fingerprint (an older beau_tf), so it cannot be checked that "
            f"{source} embeds as that model does; re-export the model "
            "(python -m beau_tf.export), serve or load the new version and "
            "rebuild the index from it (python -m beau_tf.index)."
        )
    return fingerprint


def check_answer(
    built: Mapping,
    version: int | None,
    fingerprint: str,
    source: str,
    index_name: str = "the index",
) -> None:
    """Refuses an answer from another model than the index was built with.

    Args:
      built: the identity the index recorded.
      version: the version that answered; None where the answer names none.
      fingerprint: the answer's `model_fingerprint`.
      source: what answered ("TF Serving at localhost:8500").
      index_name: the index, as messages name it.

    Raises:
      IncompatibleModelError: another version answered, or the same name and
        version with another model fingerprint (other weights or settings);
        or `built` has no fingerprint (see `fingerprint_to_hold`).
    """
    expected = fingerprint_to_hold(built, source, index_name)
    name, built_version = built.get("model_name"), built.get("model_version")
    if version is not None and int(version) != int(built_version):
        raise IncompatibleModelError(
            f"{source} answered with {name} version {version}, but "
            f"{index_name} was built from version {built_version}; serve "
            "that version, or rebuild the index from the served one with "
            "python -m beau_tf.index."
        )
    if fingerprint != expected:
        raise IncompatibleModelError(
            f"{source} answers as {name} version {built_version} with model "
            f"fingerprint {_short(fingerprint)}, but {index_name} was built "
            f"from {name} version {built_version} with model fingerprint "
            f"{_short(expected)}: the same name and version, but other "
            "weights or settings (re-exported?). Embed with the export the "
            "index was built from, or rebuild the index from this one with "
            "python -m beau_tf.index."
        )


def check_outputs(outputs: Iterable[str], where: str) -> None:
    """Refuses a signature that does not return `QUERY_OUTPUTS`.

    Args:
      outputs: the names the signature returns.
      where: the signature, as messages name it ("m/1's 'serving_default'
        signature").

    Raises:
      IncompatibleModelError: outputs are missing: the status and model
        fingerprint are, for an export of an older beau_tf.
    """
    outputs = sorted(outputs)
    missing = sorted(set(QUERY_OUTPUTS) - set(outputs))
    if missing:
        raise IncompatibleModelError(
            f"{where} returns {outputs}, without {missing}: it was "
            f"{OLDER_EXPORT_HINT}."
        )
