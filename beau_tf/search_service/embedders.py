"""The model behind the service: a local SavedModel or TF Serving over gRPC.

Both are seen through one small adapter, `EmbeddingModel`: per query
signature an `embedding.EmbedFn` (B encoded images -> an `EmbeddedBatch`:
(B, D) embeddings, B statuses, the answering model's fingerprint), checked to
answer as the model the index was built from, and optionally a `MaskFn` for
the predicted product masks. The rest of the service never learns where
embeddings come from, and tests pass fake functions.
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import io

import numpy as np
from PIL import Image
import tensorflow as tf

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import grpc_client

# B encoded images -> (B, M, M) float32 masks in [0, 1], each covering the
# square the image was fitted into (see `beau_tf.serving.preprocess`).
MaskFn = Callable[[Sequence[bytes]], np.ndarray]

QUERY_SIGNATURES = (contract.SIGNATURE_NAME, contract.MULTISCALE_SIGNATURE_NAME)


class EmbeddingUnavailableError(RuntimeError):
    """The model could not embed (server down, another model answering); the
    message says what to check. Not the client's fault: the service answers
    503."""


@dataclasses.dataclass(frozen=True)
class EmbeddingModel:
    """What the service needs of a model.

    Attributes:
      identity: the model's identity (`contract.model_identity`); over gRPC,
        the one the served index names, which the server is held to.
      embed_fns: query signature name -> its `embedding.EmbedFn`.
      mask_fn: the `serving_default` masks, or None where unavailable.
      source: where it runs, for logs and errors.
    """

    identity: Mapping
    embed_fns: Mapping[str, embedding_lib.EmbedFn]
    mask_fn: MaskFn | None
    source: str

    def summary(self) -> dict:
        """`{"name", "version", "fingerprint"}`, as the service reports it.

        The fingerprint is the model fingerprint (weights and settings),
        or the signature's for an export older than it.
        """
        return {
            "name": self.identity.get("model_name"),
            "version": self.identity.get("model_version"),
            "fingerprint": self.identity.get("model_fingerprint")
            or self.identity.get("signature_fingerprint"),
        }

    def check_index(self, bundle: index_dir_lib.IndexBundle) -> None:
        """Raises ValueError unless `bundle` was built with this model."""
        bundle.index.check_compatible(dict(self.identity))


def checked(
    embed_fn: embedding_lib.EmbedFn, identity: Mapping, source: str
) -> embedding_lib.EmbedFn:
    """`embed_fn`, refusing answers from another model than `identity`'s.

    Every answer carries the answering model's fingerprint; one that differs
    from the identity's (a model re-exported under the same version, say)
    raises instead of returning embeddings from another space. A server
    failure raises `EmbeddingUnavailableError` too.
    """
    expected = identity.get("model_fingerprint")

    def embed(images):
        try:
            batch = embed_fn(images)
        except grpc_client.ServingError as error:
            raise EmbeddingUnavailableError(str(error)) from error
        if expected and batch.model_fingerprint != expected:
            raise EmbeddingUnavailableError(
                f"{source} answers with model fingerprint "
                f"{batch.model_fingerprint[:12]}…, but the index was built "
                f"with {expected[:12]}…: the same name and version, other "
                "weights or settings. Serve the export the index was built "
                "from, or rebuild the index (python -m beau_tf.index)."
            )
        if len(batch.statuses) != len(images) or len(batch.embeddings) != len(
            images
        ):
            raise EmbeddingUnavailableError(
                f"{source} answered {len(batch.embeddings)} embeddings and "
                f"{len(batch.statuses)} statuses for {len(images)} images."
            )
        return batch

    return embed


def load_local_model(model_dir: str) -> EmbeddingModel:
    """Loads an exported version folder once, for both query signatures and
    the masks.

    One `tf.saved_model.load` serves the three uses, where
    `embedding.load_embed_fn` would load the model once per signature and
    gives no masks.

    Raises:
      FileNotFoundError: `model_dir` is not an export of python -m
        beau_tf.export.
      ValueError: it lacks a query signature, or was exported by a beau_tf
        older than per-image statuses.
    """
    identity = contract.model_identity(model_dir)
    signatures = embedding_lib.load_signatures(model_dir, QUERY_SIGNATURES)
    source = f"the SavedModel {model_dir}"
    default = signatures[contract.SIGNATURE_NAME]

    def masks(images):
        outputs = default(images=tf.constant(list(images), tf.string))
        return outputs[contract.MASK_OUTPUT].numpy()[..., 0]  # (B, M, M)

    return EmbeddingModel(
        identity=identity,
        embed_fns={
            name: checked(
                embedding_lib.as_embed_fn(signatures[name]), identity, source
            )
            for name in QUERY_SIGNATURES
        },
        mask_fn=(
            masks
            if contract.MASK_OUTPUT in default.structured_outputs
            else None
        ),
        source=source,
    )


def connect_to_server(
    address: str, identity: Mapping, timeout_seconds: float = 10.0
) -> EmbeddingModel:
    """A client of TF Serving that asks for exactly the model `identity`
    names (its name and version) and refuses answers from any other model
    (version or fingerprint).

    Nothing is sent until the first call (`warm_up` makes one).

    Raises:
      ValueError: `address` is not host:port, or `identity` has no model
        fingerprint to hold the server to (an index built from an export
        older than it).
    """
    name, version = identity["model_name"], int(identity["model_version"])
    if not identity.get("model_fingerprint"):
        raise ValueError(
            f"the index was built from {name} version {version} exported "
            "without a model fingerprint (an older beau_tf), so it cannot be "
            f"checked that TF Serving at {address} embeds as that model does; "
            "re-export the model, serve it and rebuild the index from it."
        )
    source = f"TF Serving at {address} ({name} version {version})"

    def pinned(signature_name: str) -> embedding_lib.EmbedFn:
        client = grpc_client.PredictionClient(
            address, name, signature_name, timeout_seconds, version
        )

        def embed(images):
            batch = client(images)
            if client.model_version != version:
                raise EmbeddingUnavailableError(
                    f"{source} answered with version {client.model_version}."
                )
            return batch

        return embed

    return EmbeddingModel(
        identity=dict(identity),
        embed_fns={
            signature: checked(pinned(signature), identity, source)
            for signature in QUERY_SIGNATURES
        },
        mask_fn=None,  # masks would cross the network; the client asks none
        source=source,
    )


def warm_up(model: EmbeddingModel) -> None:
    """Calls every function of `model` once on a small grey image.

    The first call of a SavedModel signature is slower than the rest, and a
    server that is down or serves another model fails here, before the
    service says it is ready, rather than on a user's request.

    Raises:
      EmbeddingUnavailableError: a function failed or answered badly.
    """
    stream = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(stream, format="PNG")
    probe = [stream.getvalue()]
    dim = model.identity.get("embedding_dim")
    for name, embed in model.embed_fns.items():
        batch = embed(probe)
        shape = np.shape(batch.embeddings)
        if shape != (1, dim) or batch.statuses != [contract.STATUS_OK]:
            raise EmbeddingUnavailableError(
                f"{model.source} answered {name!r} on a 32x32 test image with "
                f"embeddings of shape {shape} and statuses {batch.statuses}; "
                f"expected (1, {dim}) and ['ok']."
            )
    if model.mask_fn is not None:
        model.mask_fn(probe)
