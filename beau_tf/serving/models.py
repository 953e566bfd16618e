"""An exported model to embed with, local or served, held to one identity.

`open_model` opens an export version folder (a SavedModel loaded here) or
TF Serving's gRPC address "host:port" (TF Serving, or the stand-in
`beau_tf.serving.prediction_service`) as one `EmbeddingModel`: per query
signature an `embedding.EmbedFn` (B encoded images -> an `EmbeddedBatch`),
the masks where the model gives them, its identity and where it runs.

Both are pinned to one identity, usually the one an index recorded: the
model is asked for that name and version, and every answer's version and
model fingerprint must be that identity's, or `contract.IncompatibleModelError`
says which model answered and what to do (the rules are
`beau_tf.serving.contract`'s). So a model re-exported under the same name and
version, with other weights, is refused locally and over gRPC alike.

A local export runs its SavedModel on TensorFlow, or, with `runtime=`, a copy
of its model converted for OpenVINO (`beau_tf.serving.runtimes`), which
answers with the export's identity and fingerprint; without OpenVINO
installed a warning says so and the SavedModel runs.

    with models.open_model("localhost:8500", bundle.manifest["model_identity"],
                           index_name=f"index {bundle.directory}") as model:
        batch = model.embed_fns["serving_default"]([jpeg_bytes])
"""

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import grpc_client
from beau_tf.serving import runtimes

# B encoded images -> (B, M, M) float32 masks in [0, 1], each covering the
# square the image was fitted into (see `beau_tf.serving.preprocess`).
MaskFn = Callable[[Sequence[bytes]], np.ndarray]


def _nothing_to_close() -> None:
    pass


@dataclasses.dataclass(frozen=True)
class EmbeddingModel:
    """An opened model, pinned to one identity.

    Attributes:
      identity: the model's identity (`contract.model_identity`): the export
        folder's when local, the one it is held to when served.
      embed_fns: signature name -> its `embedding.EmbedFn`, refusing answers
        of another model.
      mask_fn: the `serving_default` masks, or None where unavailable (masks
        never cross the network).
      source: where it runs, for logs and errors.
      close_fn: releases what the model holds (gRPC channels).
    """

    identity: Mapping
    embed_fns: Mapping[str, embedding_lib.EmbedFn]
    mask_fn: MaskFn | None
    source: str
    close_fn: Callable[[], None] = _nothing_to_close

    def summary(self) -> dict:
        """`{"name", "version", "fingerprint"}`, as the search service reports
        it.

        The fingerprint is the model fingerprint (weights and settings),
        or the signature's for an export older than it.
        """
        return {
            "name": self.identity.get("model_name"),
            "version": self.identity.get("model_version"),
            "fingerprint": self.identity.get("model_fingerprint")
            or self.identity.get("signature_fingerprint"),
        }

    def close(self) -> None:
        self.close_fn()

    def __enter__(self) -> "EmbeddingModel":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def pin(
    embed_fn: embedding_lib.EmbedFn,
    expected_identity: Mapping,
    source: str,
    index_name: str = "the index",
) -> embedding_lib.EmbedFn:
    """`embed_fn`, refusing answers from another model than
    `expected_identity`'s (`contract.check_answer`).

    Args:
      embed_fn: the model's own function.
      expected_identity: the identity every answer is held to.
      source: where `embed_fn` runs, as messages name it.
      index_name: what `expected_identity` was read from, as messages name it
        ("index indexes/v1").

    Raises:
      contract.IncompatibleModelError: `expected_identity` has no model
        fingerprint to hold answers to (an index built from an older
        beau_tf's export).
    """
    contract.fingerprint_to_hold(expected_identity, source, index_name)

    def embed(images: Sequence[bytes]) -> embedding_lib.EmbeddedBatch:
        batch = embed_fn(images)
        contract.check_answer(
            expected_identity,
            batch.model_version,
            batch.model_fingerprint,
            source,
            index_name,
        )
        return batch

    return embed


def open_model(
    model: str,
    expected_identity: Mapping | None = None,
    *,
    index_name: str = "the index",
    signature_names: Sequence[str] = contract.QUERY_SIGNATURES,
    timeout_seconds: float = 10.0,
    runtime: str = runtimes.TENSORFLOW,
) -> EmbeddingModel:
    """Opens an exported model, local or served, held to one identity.

    Args:
      model: an export version folder (`exported/beau_tf/1`, loaded here),
        or TF Serving's gRPC address "host:port" (`localhost:8500`); a
        folder whose name reads host:port is written `./name:port`.
      expected_identity: the identity the model must have and its answers
        must carry (an index's `manifest["model_identity"]`); None for a
        local folder's own identity. Required for a server: it names the
        model and version asked for.
      index_name: what `expected_identity` was read from, as messages name
        it ("index indexes/v1").
      signature_names: the signatures to embed with (`embed_fns`' keys).
      timeout_seconds: deadline of each gRPC request.
      runtime: what runs a local export's model (`runtimes.NAMES`):
        "tensorflow", the SavedModel, or a converted copy; TF Serving runs
        the SavedModel, so a server takes "tensorflow" only.

    Returns:
      The model; close it (or use it as a context manager) when done.

    Raises:
      FileNotFoundError: `model` is neither a folder written by python -m
        beau_tf.export nor host:port.
      ValueError: `model` is a malformed address, a server is opened without
        an identity or with another runtime than "tensorflow", or a signature
        is missing.
      runtimes.ConvertedModelError: the export has no copy for `runtime`,
        or one converted from another model.
      contract.IncompatibleModelError: the export is another model than
        `expected_identity`, or `expected_identity` cannot hold one to it
        (see `beau_tf.serving.contract`).
    """
    runtimes.check_name(runtime)
    if grpc_client.is_address(model):
        if runtime != runtimes.TENSORFLOW:
            raise ValueError(
                f"runtime {runtime} runs a local export; TF Serving at "
                f"{model} runs the SavedModel itself: embed with a local "
                "export (--model) or leave the runtime tensorflow."
            )
        return _connect(
            model,
            expected_identity,
            index_name,
            signature_names,
            timeout_seconds,
        )
    return _load(model, expected_identity, index_name, signature_names, runtime)


def _load(
    model_dir: str,
    expected_identity: Mapping | None,
    index_name: str,
    signature_names: Sequence[str],
    runtime: str,
) -> EmbeddingModel:
    """`open_model` of an export version folder, loaded once for every
    signature and the masks."""
    if not os.path.exists(model_dir):
        raise FileNotFoundError(
            f"{model_dir} is neither an export version folder (python -m "
            "beau_tf.export writes one, e.g. exported/beau_tf/1) nor TF "
            "Serving's gRPC address host:port (e.g. localhost:8500)."
        )
    identity = contract.model_identity(model_dir)
    if expected_identity is None:
        expected_identity = identity
    contract.check_compatible(expected_identity, identity, index_name)
    wanted = list(dict.fromkeys([*signature_names, contract.SIGNATURE_NAME]))
    converted = _open_converted(model_dir, runtime, identity)
    if converted is None:
        signatures = embedding_lib.load_signatures(model_dir, wanted)
        source = f"the SavedModel {model_dir}"
    else:
        signatures = {
            contract.SIGNATURE_NAME: converted.serve.get_concrete_function(),
            contract.MULTISCALE_SIGNATURE_NAME: (
                converted.serve_multiscale.get_concrete_function()
            ),
        }
        source = f"{model_dir} on {runtimes.RUNTIMES[runtime].description}"
    default = signatures[contract.SIGNATURE_NAME]

    def masks(images: Sequence[bytes]) -> np.ndarray:
        outputs = default(images=tf.constant(list(images), tf.string))
        return outputs[contract.MASK_OUTPUT].numpy()[..., 0]  # (B, M, M)

    version = identity.get("model_version")
    return EmbeddingModel(
        identity=identity,
        embed_fns={
            name: pin(
                embedding_lib.as_embed_fn(signatures[name], version),
                expected_identity,
                source,
                index_name,
            )
            for name in signature_names
        },
        mask_fn=(
            masks
            if contract.MASK_OUTPUT in default.structured_outputs
            else None
        ),
        source=source,
    )


def _open_converted(
    model_dir: str, runtime: str, identity: Mapping
) -> "runtimes.RuntimeSignatures | None":
    """The signatures around `model_dir`'s copy for `runtime`; None for
    the SavedModel (runtime "tensorflow", or OpenVINO not installed)."""
    if runtime == runtimes.TENSORFLOW:
        return None
    try:
        return runtimes.open_signatures(model_dir, runtime, identity)
    except runtimes.RuntimeNotInstalledError as error:
        logging.warning("%s; running the SavedModel on TensorFlow.", error)
        return None


def _connect(
    address: str,
    expected_identity: Mapping | None,
    index_name: str,
    signature_names: Sequence[str],
    timeout_seconds: float,
) -> EmbeddingModel:
    """`open_model` of TF Serving: one client per signature, each asking for
    exactly the version `expected_identity` names. Nothing is sent until the
    first call."""
    if expected_identity is None:
        raise ValueError(
            f"opening TF Serving at {address} needs the identity of the model "
            "it must serve (an index's manifest names it); pass "
            "expected_identity."
        )
    source = f"TF Serving at {address}"
    contract.fingerprint_to_hold(expected_identity, source, index_name)
    name = expected_identity["model_name"]
    version = int(expected_identity["model_version"])
    clients = {
        signature: grpc_client.PredictionClient(
            address, name, signature, timeout_seconds, version
        )
        for signature in signature_names
    }
    embed_fns = {
        signature: pin(client, expected_identity, source, index_name)
        for signature, client in clients.items()
    }

    def close() -> None:
        for client in clients.values():
            client.close()

    return EmbeddingModel(
        identity=dict(expected_identity),
        embed_fns=embed_fns,
        mask_fn=None,  # masks would cross the network; the client asks none
        source=f"{source} ({name} version {version})",
        close_fn=close,
    )
