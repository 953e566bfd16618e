"""The model behind the service: `beau_tf.serving.models.open_model`, local or
over gRPC, with what the service adds.

The model is an `models.EmbeddingModel` (per query signature an
`embedding.EmbedFn`, held to the model the index was built with, and the
masks where available); the service adds that a failure to embed is
`EmbeddingUnavailableError` (answered 503, not the client's fault), a check
of every index version it serves, and a warm-up before it says it is ready.
The rest of the service never learns where embeddings come from, and tests
pass fake functions.
"""

import dataclasses
import io
from collections.abc import Mapping

import numpy as np
from PIL import Image

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import grpc_client
from beau_tf.serving import models
from beau_tf.serving import runtimes


class EmbeddingUnavailableError(RuntimeError):
    """The model could not embed (server down, another model answering); the
    message says what to check. Not the client's fault: the service answers
    503."""


def _unavailable_on_failure(
    embed_fn: embedding_lib.EmbedFn, source: str
) -> embedding_lib.EmbedFn:
    """`embed_fn`, raising `EmbeddingUnavailableError` when the model fails,
    answers as another model, or answers for fewer or more images."""

    def embed(images):
        try:
            batch = embed_fn(images)
        except (
            grpc_client.ServingError,
            contract.IncompatibleModelError,
        ) as error:
            raise EmbeddingUnavailableError(str(error)) from error
        if len(batch.statuses) != len(images) or len(batch.embeddings) != len(
            images
        ):
            raise EmbeddingUnavailableError(
                f"{source} answered {len(batch.embeddings)} embeddings and "
                f"{len(batch.statuses)} statuses for {len(images)} images."
            )
        return batch

    return embed


def for_service(model: models.EmbeddingModel) -> models.EmbeddingModel:
    """`model` with its failures to embed as `EmbeddingUnavailableError`."""
    return dataclasses.replace(
        model,
        embed_fns={
            name: _unavailable_on_failure(embed_fn, model.source)
            for name, embed_fn in model.embed_fns.items()
        },
    )


def load_local_model(
    model_dir: str, runtime: str = runtimes.TENSORFLOW
) -> models.EmbeddingModel:
    """The service's model from an export version folder (both query
    signatures and the masks, one load), run by `runtime`
    (`beau_tf.serving.runtimes`).

    Raises:
      See `models.open_model`.
    """
    return for_service(models.open_model(model_dir, runtime=runtime))


def connect_to_server(
    address: str, identity: Mapping, timeout_seconds: float = 10.0
) -> models.EmbeddingModel:
    """The service's model from TF Serving at `address`, asked for exactly the
    model `identity` names and held to it (`models.open_model`).

    Nothing is sent until the first call (`warm_up` makes one).

    Raises:
      ValueError: `address` is not host:port.
      contract.IncompatibleModelError: `identity` has no model fingerprint to
        hold the server to (an index built from an export older than it).
    """
    grpc_client.check_address(address)
    return for_service(
        models.open_model(address, identity, timeout_seconds=timeout_seconds)
    )


def check_index(
    model: models.EmbeddingModel, bundle: index_dir_lib.IndexBundle
) -> None:
    """Raises ValueError unless `bundle` was built with `model`."""
    bundle.index.check_compatible(dict(model.identity))


def warm_up(model: models.EmbeddingModel) -> None:
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
