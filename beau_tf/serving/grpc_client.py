"""Embeds encoded images with the beau_tf model served by TF Serving (gRPC).

The served SavedModel's `serving_default` signature takes `images`, a string
tensor of encoded image bytes (B,), and returns `embedding` (B, D) float32,
L2-normalised, and `mask` (B, S, S, 1). Only `embedding` is asked for, so masks
never cross the network.

Example, against `docker run -p 8500:8500 ... tensorflow/serving` (see
export/README.md):

    embeddings, info = serving_client.embed_with_server(
        "localhost:8500", [open("query.jpg", "rb").read()])
"""

import re
from typing import Sequence

from absl import logging
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

_INPUT_KEY = "images"
_OUTPUT_KEY = "embedding"
# A host name, an IPv4 address or a bracketed IPv6 address, then a port.
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
# gRPC's default 4 MiB cap on received messages is too small for big batches.
_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)


class ServingError(RuntimeError):
    """TF Serving gave no embeddings; the message says why and what to check."""


def _check_address(address: str) -> None:
    """Raises ValueError unless `address` reads "host:port"."""
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(
            f"address {address!r} is not 'host:port' with a port in 1-65535; "
            "pass e.g. 'localhost:8500' (TF Serving's gRPC port)."
        )


def _check_arguments(
    images: Sequence[bytes],
    timeout_seconds: float,
    version: int | None,
    batch_size: int,
) -> None:
    """Raises ValueError or TypeError naming the first bad argument."""
    if isinstance(images, (bytes, str)):
        raise TypeError(
            "images must be a sequence of encoded images, not one "
            f"{type(images).__name__}; wrap a single image as [image_bytes]."
        )
    if len(images) == 0:
        raise ValueError("images is empty; pass at least one encoded image.")
    for index, image in enumerate(images):
        if not isinstance(image, bytes):
            raise TypeError(
                f"images[{index}] is a {type(image).__name__}, not bytes; pass "
                "the encoded file contents, e.g. open(path, 'rb').read()."
            )
    if not timeout_seconds > 0:
        raise ValueError(
            f"timeout_seconds={timeout_seconds!r} must be positive."
        )
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 0
    ):
        raise ValueError(
            f"version={version!r} must be a non-negative int (the numbered "
            "folder under the model's base path), or None for the latest."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1.")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")


def _make_request(
    images: Sequence[bytes],
    model_name: str,
    signature_name: str,
    version: int | None,
) -> predict_pb2.PredictRequest:
    """Builds a PredictRequest asking only for the embedding of `images`."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[_INPUT_KEY].CopyFrom(
        tf.make_tensor_proto(list(images), dtype=tf.string)  # (B,)
    )
    request.output_filter.append(_OUTPUT_KEY)
    return request


def _describe_model(
    model_name: str, signature_name: str, version: int | None
) -> str:
    """Names the servable a request asked for, e.g. "model 'beau_tf' v3"."""
    which = "latest version" if version is None else f"version {version}"
    return f"model {model_name!r} ({which}, signature {signature_name!r})"


def _serving_error(
    error: grpc.RpcError,
    address: str,
    model: str,
    first: int,
    last: int,
    timeout_seconds: float,
) -> ServingError:
    """Turns a failed Predict call into a ServingError that says what to do."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    details = (details or "no details").rstrip(". ")
    if code == grpc.StatusCode.UNAVAILABLE:
        message = (
            f"could not reach TF Serving at {address} — is the server running "
            "and is this its gRPC port (8500 by default, not the REST port "
            "8501)? (docker command in export/README.md). "
            f"gRPC said: {details}"
        )
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = (
            f"no answer from TF Serving at {address} within "
            f"{timeout_seconds:g} s for images {first}..{last - 1}; the "
            "server may be overloaded or still loading the model: raise "
            "timeout_seconds or lower batch_size."
        )
    elif code == grpc.StatusCode.INVALID_ARGUMENT:
        message = (
            f"TF Serving at {address} rejected the request for images "
            f"{first}..{last - 1} to {model}: {details}. Check that each "
            "image is an encoded JPEG, PNG, BMP, GIF or WebP file and that "
            f"the signature takes a string input {_INPUT_KEY!r} and returns "
            f"{_OUTPUT_KEY!r}."
        )
    elif code == grpc.StatusCode.NOT_FOUND:
        message = (
            f"TF Serving at {address} does not serve {model}: {details}. "
            "Check that model_name matches the server's --model_name and "
            "that the version is a numbered folder it has loaded."
        )
    elif code == grpc.StatusCode.FAILED_PRECONDITION:
        message = (
            f"TF Serving at {address} does not serve {model}: {details}. "
            "Check signature_name against the model's signatures "
            "(saved_model_cli show --all --dir <version folder>)."
        )
    else:
        name = code.name if code is not None else "unknown status"
        message = (
            f"TF Serving at {address} failed on images {first}..{last - 1} "
            f"for {model}: {name}: {details}"
        )
    return ServingError(message)


def _embeddings_from(
    response, address: str, count: int, first: int
) -> np.ndarray:
    """Reads the (B, D) embedding out of a PredictResponse and checks it."""
    if _OUTPUT_KEY not in response.outputs:
        raise ServingError(
            f"TF Serving at {address} answered without an {_OUTPUT_KEY!r} "
            f"output (got {sorted(response.outputs)}); the served signature "
            f"must return {_OUTPUT_KEY!r} — re-export the model."
        )
    embeddings = tf.make_ndarray(response.outputs[_OUTPUT_KEY])
    if embeddings.ndim != 2 or embeddings.shape[0] != count:
        raise ServingError(
            f"TF Serving at {address} returned {_OUTPUT_KEY!r} of shape "
            f"{embeddings.shape} for images {first}..{first + count - 1}; "
            f"expected ({count}, D) — re-export the model with a (B, D) "
            "embedding output."
        )
    return embeddings.astype(np.float32, copy=False)


def embed_with_server(
    address: str,
    images: Sequence[bytes],
    model_name: str = "beau_tf",
    signature_name: str = "serving_default",
    timeout_seconds: float = 10.0,
    version: int | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, dict]:
    """Embeds encoded images with a model served by TF Serving over gRPC.

    Images are sent `batch_size` at a time, in order. When `version` is None
    the first batch goes to the latest version and later batches are pinned to
    the version that answered, so one call never mixes embeddings of two
    model versions when the server loads a new one mid-call.

    Args:
        address: TF Serving's gRPC endpoint, "host:port" (e.g.
            "localhost:8500").
        images: encoded image files (JPEG, PNG, BMP, GIF or WebP bytes).
        model_name: the model's name in TF Serving (`--model_name`).
        signature_name: the SavedModel signature to call.
        timeout_seconds: deadline of each batch's request.
        version: the model version to ask for; None for the latest.
        batch_size: images per request.

    Returns:
        `(embeddings, info)`: embeddings (N, D) float32, one row per image in
        the order given; info `{"model_name": str, "model_version": int}`
        naming the servable that answered.

    Raises:
        ServingError: the server could not be reached, did not answer in
            time, rejected the images, does not serve the model, or answered
            without a (B, D) `embedding`.
        ValueError: `address`, `timeout_seconds`, `version` or `batch_size` is
            malformed, or `images` is empty.
        TypeError: `images` is not a sequence of bytes.
    """
    _check_address(address)
    _check_arguments(images, timeout_seconds, version, batch_size)
    parts = []
    pinned_version = version
    answered_version = 0
    with grpc.insecure_channel(address, options=_CHANNEL_OPTIONS) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for first in range(0, len(images), batch_size):
            batch = images[first : first + batch_size]
            request = _make_request(
                batch, model_name, signature_name, pinned_version
            )
            model = _describe_model(model_name, signature_name, pinned_version)
            try:
                response = stub.Predict(request, timeout=timeout_seconds)
            except grpc.RpcError as error:
                raise _serving_error(
                    error,
                    address,
                    model,
                    first,
                    first + len(batch),
                    timeout_seconds,
                ) from None
            parts.append(_embeddings_from(response, address, len(batch), first))
            answered_version = response.model_spec.version.value
            if response.model_spec.HasField("version"):
                pinned_version = answered_version
    dims = {part.shape[1] for part in parts}
    if len(dims) != 1:
        raise ServingError(
            f"TF Serving at {address} returned embeddings of sizes "
            f"{sorted(dims)} within one call; check the served model."
        )
    logging.info(
        "Embedded %d images with %s version %d at %s.",
        len(images),
        model_name,
        answered_version,
        address,
    )
    return np.concatenate(parts, axis=0), {
        "model_name": model_name,
        "model_version": int(answered_version),
    }
