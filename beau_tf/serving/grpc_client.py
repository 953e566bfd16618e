"""Embeds encoded images with the beau_tf model served by TF Serving (gRPC).

The served signatures (`beau_tf.serving.contract`) take `images`, a string
tensor of encoded image bytes (B,), and return `embedding` (B, D) float32,
`status` (B,) per image and the constant `model_fingerprint`, which is all
this client asks for: masks never cross the network. An image the model
cannot use comes back with a zero embedding and a status saying why; it
never fails its batch.

Example, against `docker run -p 8500:8500 ... tensorflow/serving` or
`python -m beau_tf.dev_server` (see export/README.md):

    with grpc_client.PredictionClient("localhost:8500") as client:
        batch = client([open("query.jpg", "rb").read()])

A `PredictionClient` is a `beau_tf.serving.embedding.EmbedFn` (one request
per call), so `embedding.embed_files` reads files for it as it does for a
local model. To embed for an index, open the server with
`beau_tf.serving.models.open_model`, which holds every answer to the model
the index was built with.
"""

import re
from typing import Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib

# A host name, an IPv4 address or a bracketed IPv6 address, then a port.
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
# gRPC's default 4 MiB cap on received messages is too small for big batches.
_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)
# The most image bytes one request carries; a call with more is sent as
# several requests. The development server refuses requests over 64 MiB
# (beau_tf.serving.prediction_service).
MAX_REQUEST_BYTES = 16 * 2**20
# What to change when a request times out, as the command lines call it.
_TIMEOUT_HINT = (
    "raise the deadline (--timeout of python -m beau_tf.search and "
    "beau_tf.evaluate; timeout_seconds in Python) or send fewer images per "
    "request (batch_size, an argument of embedding.embed_files only: the "
    "command lines send 32 and have no flag for it)"
)


class ServingError(RuntimeError):
    """TF Serving gave no embeddings; the message says why and what to check."""


def is_address(text: str) -> bool:
    """Whether `text` has the shape of "host:port" (the port unchecked)."""
    return isinstance(text, str) and _ADDRESS.match(text) is not None


def check_address(address: str) -> None:
    """Raises ValueError unless `address` reads "host:port"."""
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(
            f"address {address!r} is not 'host:port' with a port in 1-65535; "
            "pass e.g. 'localhost:8500' (TF Serving's gRPC port)."
        )


def _check_images(images: Sequence[bytes]) -> None:
    """Raises ValueError or TypeError unless `images` is a sequence of bytes."""
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


def _check_settings(timeout_seconds: float, version: int | None) -> None:
    """Raises ValueError naming the first bad argument."""
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


def _make_request(
    images: Sequence[bytes],
    model_name: str,
    signature_name: str,
    version: int | None,
) -> predict_pb2.PredictRequest:
    """Builds a PredictRequest for the embeddings and statuses of `images`."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[contract.INPUT_NAME].CopyFrom(
        tf.make_tensor_proto(list(images), dtype=tf.string)  # (B,)
    )
    request.output_filter.extend(contract.QUERY_OUTPUTS)
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
            "server may be overloaded or still loading the model: "
            f"{_TIMEOUT_HINT}."
        )
    elif code == grpc.StatusCode.INVALID_ARGUMENT:
        message = (
            f"TF Serving at {address} rejected the request for images "
            f"{first}..{last - 1} to {model}: {details}. Check that the "
            f"signature takes a string input {contract.INPUT_NAME!r} and "
            f"returns {', '.join(map(repr, contract.QUERY_OUTPUTS))}; a "
            f"model without the last two was {contract.OLDER_EXPORT_HINT}."
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


def _batch_from(
    response, address: str, count: int, first: int
) -> embedding_lib.EmbeddedBatch:
    """Reads embeddings, statuses, fingerprint and version out of a
    PredictResponse."""
    contract.check_outputs(response.outputs, f"TF Serving at {address}")
    embeddings, statuses, fingerprint = (
        tf.make_ndarray(response.outputs[name])
        for name in contract.QUERY_OUTPUTS
    )
    if (
        embeddings.ndim != 2
        or embeddings.shape[0] != count
        or statuses.shape != (count,)
        or fingerprint.shape != (count,)
        or len(set(fingerprint.tolist())) != 1
    ):
        raise ServingError(
            f"TF Serving at {address} returned embedding {embeddings.shape}, "
            f"status {statuses.shape} and model_fingerprint "
            f"{fingerprint.shape} for images {first}..{first + count - 1}; "
            f"expected ({count}, D), ({count},) and ({count},) of one value — "
            "re-export the model "
            "with python -m beau_tf.export."
        )
    return embedding_lib.EmbeddedBatch(
        embeddings=embeddings.astype(np.float32, copy=False),
        statuses=[status.decode("utf-8") for status in statuses],
        model_fingerprint=fingerprint[0].decode("utf-8"),
        model_version=(
            response.model_spec.version.value
            if response.model_spec.HasField("version")
            else None
        ),
    )


def _split(images: Sequence[bytes], max_bytes: int) -> list[Sequence[bytes]]:
    """`images` in consecutive groups of at most `max_bytes` (an image
    larger than that goes alone)."""
    groups, start, size = [], 0, 0
    for end, image in enumerate(images):
        if end > start and size + len(image) > max_bytes:
            groups.append(images[start:end])
            start, size = end, 0
        size += len(image)
    groups.append(images[start:])
    return groups


class PredictionClient:
    """One signature of a model served by TF Serving, as an `EmbedFn`.

    Calls send their images in one Predict request each, or in several
    when they hold more than `max_request_bytes`, over one gRPC channel. When `version` is None the first request goes to the latest
    version and later ones are pinned to the version that answered, so a
    client never mixes embeddings of two versions when the server loads a
    new one meanwhile.

        with grpc_client.PredictionClient("localhost:8500") as client:
            batch = client([open("query.jpg", "rb").read()])

    Args:
        address: TF Serving's gRPC endpoint, "host:port" (e.g.
            "localhost:8500").
        model_name: the model's name in TF Serving (`--model_name`).
        signature_name: the SavedModel signature to call.
        timeout_seconds: deadline of each request.
        version: the model version to ask for; None for the latest.
        max_request_bytes: the most image bytes one request carries.

    Attributes:
        model_version: the version that answered, once one has (else the
            one asked for).

    Raises:
        ValueError: `address`, `timeout_seconds` or `version` is malformed.
    """

    def __init__(
        self,
        address: str,
        model_name: str = "beau_tf",
        signature_name: str = contract.SIGNATURE_NAME,
        timeout_seconds: float = 10.0,
        version: int | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ):
        check_address(address)
        _check_settings(timeout_seconds, version)
        self.max_request_bytes = max_request_bytes
        self.address = address
        self.model_name = model_name
        self.signature_name = signature_name
        self.timeout_seconds = timeout_seconds
        self.model_version = version
        self._sent = 0  # images sent so far, to number them in errors
        self._channel = grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
            self._channel
        )

    def __call__(self, images: Sequence[bytes]) -> embedding_lib.EmbeddedBatch:
        """Embeds encoded images (in one request, or several of at most
        `max_request_bytes`).

        Returns:
            One row and one status per image, in order, and the fingerprint
            and version of the model that answered.

        Raises:
            ServingError: the server could not be reached, did not answer in
                time, rejected the request, does not serve the model, or
                answered with outputs of the wrong shapes.
            contract.IncompatibleModelError: the answer lacks outputs of
                `contract.QUERY_OUTPUTS` (an older beau_tf's export).
            ValueError, TypeError: `images` is empty or not bytes.
        """
        _check_images(images)
        parts = [
            self._predict(group)
            for group in _split(images, self.max_request_bytes)
        ]
        if len(parts) == 1:
            return parts[0]
        answered = {
            (part.model_version, part.model_fingerprint) for part in parts
        }
        if len(answered) != 1:
            raise ServingError(
                f"TF Serving at {self.address} answered the parts of one "
                f"batch as different models {sorted(answered, key=str)}; "
                "retry once the server has finished loading."
            )
        return embedding_lib.EmbeddedBatch(
            embeddings=np.concatenate([part.embeddings for part in parts]),
            statuses=[status for part in parts for status in part.statuses],
            model_fingerprint=parts[0].model_fingerprint,
            model_version=parts[0].model_version,
        )

    def _predict(self, images: Sequence[bytes]) -> embedding_lib.EmbeddedBatch:
        """One Predict request for `images`."""
        first, self._sent = self._sent, self._sent + len(images)
        request = _make_request(
            images, self.model_name, self.signature_name, self.model_version
        )
        try:
            response = self._stub.Predict(request, timeout=self.timeout_seconds)
        except grpc.RpcError as error:
            model = _describe_model(
                self.model_name, self.signature_name, self.model_version
            )
            raise _serving_error(
                error,
                self.address,
                model,
                first,
                first + len(images),
                self.timeout_seconds,
            ) from None
        batch = _batch_from(response, self.address, len(images), first)
        if batch.model_version is not None:
            self.model_version = batch.model_version
        return batch

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "PredictionClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
