"""A development stand-in for TF Serving: its gRPC API over one SavedModel.

Not for production (no batching, no model reloading, one version, one
process): it lets `search --server` and the tests run without Docker or the
TF Serving binary. What a client sends is untrusted, so each request is
bounded: its size (`max_request_bytes`, gRPC's RESOURCE_EXHAUSTED above),
its images (`max_batch`; a vector of strings, shape [B], nothing else), the
pixels their headers claim (`max_request_pixels`, all images together, as
TensorFlow decodes them whole) and each JPEG's scans; and at most
`_MAX_CONCURRENT_RPCS` requests are in progress (RESOURCE_EXHAUSTED beyond).
Any of these answers INVALID_ARGUMENT naming the limit, before anything is
decoded. beau_tf's own clients send at most 1024 pixels a side
(`beau_tf.data.decode.read_for_model`) and split their requests to fit
(`grpc_client.PredictionClient`). It speaks TF Serving's gRPC API
(`tensorflow.serving.PredictionService`): `Predict`, and `GetModelMetadata`
for the `signature_def` field; and it answers with the status codes TF
Serving uses: NOT_FOUND for an unknown model or version, FAILED_PRECONDITION
for an unknown signature, INVALID_ARGUMENT for bad inputs or output names.
`python -m beau_tf.dev_server` runs it from the command line.

    server, address = prediction_service.start_server(version_dir, "beau_tf", 1)
    try:
        ...  # talk to `address`, e.g. "127.0.0.1:40123"
    finally:
        server.stop(0)
"""

from concurrent import futures
import os
import threading
import time

import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from beau_tf.data import decode
from beau_tf.serving import trust

# grpc.StatusCode by the integer code TensorFlow errors share with gRPC.
_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}
_POLL_SECONDS = 0.02
_SIGNATURE_DEF_FIELD = "signature_def"
# A request's limits (see the module docstring): 64 of beau_tf's own
# batches of 32 images of 1024² fit in each.
MAX_REQUEST_BYTES = 64 * 2**20
MAX_BATCH = 64
MAX_REQUEST_PIXELS = 64 * 2**20
_MAX_JPEG_SCANS = decode.DecodeLimits().max_jpeg_scans
_WORKERS = 4
_MAX_CONCURRENT_RPCS = 8


def latest_version(model_base: str) -> tuple[int, str]:
    """The highest numbered version under a model's base path, as TF Serving
    picks it (`--model_base_path`).

    Returns:
        `(version, <model_base>/<version>)`.

    Raises:
        FileNotFoundError: `model_base` is missing or holds no numbered
            folder with a SavedModel.
    """
    if not os.path.isdir(model_base):
        raise FileNotFoundError(
            f"model base {model_base} is not a folder; pass the folder that "
            "holds the numbered versions, e.g. exported/beau_tf."
        )
    versions = sorted(
        (
            int(name)
            for name in os.listdir(model_base)
            if name.isascii() and name.isdigit()
        ),
        reverse=True,
    )
    for version in versions:
        version_dir = os.path.join(model_base, str(version))
        if tf.saved_model.contains_saved_model(version_dir):
            return version, version_dir
    raise FileNotFoundError(
        f"{model_base} holds no numbered version folder with a SavedModel "
        "(e.g. exported/beau_tf/1, written by python -m beau_tf.export); "
        "pass the model's folder, not a version's."
    )


def _signature_defs(saved_model_dir: str) -> dict:
    """The serving MetaGraph's SignatureDefs, read from saved_model.pb."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as stream:
        saved.ParseFromString(stream.read())
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    return {}


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Serves one version of one SavedModel through Predict.

    Attributes:
        requests: every PredictRequest received, in order, for tests that
            check batching and what the client asked for.
    """

    def __init__(
        self,
        saved_model_dir: str,
        model_name: str,
        version: int,
        delay_seconds: float = 0.0,
        max_batch: int = MAX_BATCH,
        max_request_pixels: int = MAX_REQUEST_PIXELS,
    ):
        """Loads the SavedModel once.

        Args:
            saved_model_dir: a SavedModel with the signatures to serve.
            model_name: the name clients must ask for.
            version: the version this server reports and accepts.
            delay_seconds: how long each Predict waits before answering (ends
                early when the client gives up), to test client timeouts.
            max_batch: the most images one request may hold.
            max_request_pixels: the most pixels the images of one request
                may claim, all together.
        """
        self.max_batch = max_batch
        self.max_request_pixels = max_request_pixels
        trust.check_export(saved_model_dir)
        self._model = tf.saved_model.load(saved_model_dir)
        self._signature_defs = _signature_defs(saved_model_dir)
        self._model_name = model_name
        self._version = version
        self._delay_seconds = delay_seconds
        self._lock = threading.Lock()
        self.requests = []

    def _wait(self, context) -> None:
        """Sleeps `delay_seconds`, or until the client cancels or times out."""
        end = time.monotonic() + self._delay_seconds
        while context.is_active() and time.monotonic() < end:
            time.sleep(_POLL_SECONDS)

    def _check_model_spec(self, spec, context) -> None:
        """Aborts with NOT_FOUND unless `spec` names this model and version."""
        if spec.name != self._model_name:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Latest({spec.name})",
            )
        if spec.HasField("version") and spec.version.value != self._version:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                "Servable not found for request: "
                f"Specific({spec.name}, {spec.version.value})",
            )

    def Predict(self, request, context):  # pylint: disable=invalid-name
        """Runs the requested signature on the request's inputs."""
        with self._lock:
            self.requests.append(request)
        self._wait(context)
        spec = request.model_spec
        self._check_model_spec(spec, context)
        signature_name = spec.signature_name or "serving_default"
        if signature_name not in self._model.signatures:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found.',
            )
        signature = self._model.signatures[signature_name]
        wanted = set(signature.structured_input_signature[1])
        if set(request.inputs) != wanted:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input keys {sorted(request.inputs)} do not match the "
                f"signature's {sorted(wanted)}",
            )
        names = list(request.output_filter) or sorted(
            signature.structured_outputs
        )
        unknown = sorted(set(names) - set(signature.structured_outputs))
        if unknown:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {unknown[0]} "
                "Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.structured_outputs))}}}.",
            )
        inputs = {
            key: tf.constant(self._checked_images(key, proto, context))
            for key, proto in request.inputs.items()
        }
        try:
            outputs = signature(**inputs)
            error = None
        except tf.errors.OpError as op_error:
            error = op_error
        if error is not None:
            context.abort(
                _STATUS_BY_NUMBER.get(
                    error.error_code, grpc.StatusCode.UNKNOWN
                ),
                error.message,
            )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self._model_name
        response.model_spec.version.value = self._version
        response.model_spec.signature_name = signature_name
        for name in names:
            response.outputs[name].CopyFrom(
                tf.make_tensor_proto(outputs[name].numpy())
            )
        return response

    def _checked_images(self, key: str, proto, context) -> list[bytes]:
        """The encoded images of one input, or an INVALID_ARGUMENT abort
        naming the limit they break; nothing is decoded or padded out.

        The signatures take a vector of strings; reading the proto's values
        directly (not `tf.make_ndarray`, which fills a declared shape) keeps
        a small request from claiming a large tensor.
        """
        images = list(proto.string_val)
        shape = [dim.size for dim in proto.tensor_shape.dim]
        if proto.dtype != types_pb2.DT_STRING or shape != [len(images)]:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {key!r} is a {types_pb2.DataType.Name(proto.dtype)} "
                f"tensor of shape {shape} with {len(images)} string values; "
                "a vector of encoded images (DT_STRING, shape [B]) expected",
            )
        if len(images) > self.max_batch:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(images)} images in one request; this development "
                f"server takes at most {self.max_batch} (--max_batch)",
            )
        pixels = 0
        for number, image in enumerate(images):
            header = decode.read_header(image)
            if header is None:
                continue  # the model answers its status
            if header.jpeg_scans > _MAX_JPEG_SCANS:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"image {number} is a JPEG of {header.jpeg_scans} scans; "
                    f"at most {_MAX_JPEG_SCANS} accepted",
                )
            pixels += header.width * header.height
        if pixels > self.max_request_pixels:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the {len(images)} images of the request are "
                f"{pixels / 2**20:.0f} megapixels; this development server "
                f"decodes at most {self.max_request_pixels / 2**20:.0f} per "
                "request (--max_request_megapixels): send fewer or smaller "
                "images (beau_tf's clients send at most 1024 pixels a side)",
            )
        return images

    def GetModelMetadata(
        self, request, context
    ):  # pylint: disable=invalid-name
        """The model's SignatureDefs, as TF Serving returns them."""
        self._check_model_spec(request.model_spec, context)
        fields = set(request.metadata_field)
        if fields != {_SIGNATURE_DEF_FIELD}:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Metadata field(s) not supported: "
                f"{sorted(fields - {_SIGNATURE_DEF_FIELD}) or '(none asked)'}; "
                f"ask for {_SIGNATURE_DEF_FIELD!r}",
            )
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in self._signature_defs.items():
            signatures.signature_def[name].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self._model_name
        response.model_spec.version.value = self._version
        response.metadata[_SIGNATURE_DEF_FIELD].Pack(signatures)
        return response


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_server(
    saved_model_dir: str,
    model_name: str,
    version: int,
    host: str = "127.0.0.1",
    port: int = 0,
    delay_seconds: float = 0.0,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    max_batch: int = MAX_BATCH,
    max_request_pixels: int = MAX_REQUEST_PIXELS,
) -> tuple[grpc.Server, str]:
    """Starts a PredictionService for one SavedModel.

    Args:
        saved_model_dir: the SavedModel to serve.
        model_name: the model name clients must ask for.
        version: the model version to report and accept.
        host: the interface to listen on; the default keeps it on this
            machine.
        port: the port; 0 lets the system pick a free one.
        delay_seconds: wait before each answer, to test client timeouts.
        max_request_bytes: the largest request accepted.
        max_batch: the most images one request may hold.
        max_request_pixels: the most pixels the images of one request may
            claim, together.

    Returns:
        `(server, address)`: the started grpc.Server (stop it with
        `server.stop(0)`; its servicer is `server.servicer`) and its
        "host:port" address.

    Raises:
        OSError: the address cannot be bound (the port is taken).
    """
    servicer = PredictionServicer(
        saved_model_dir,
        model_name,
        version,
        delay_seconds,
        max_batch=max_batch,
        max_request_pixels=max_request_pixels,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=_WORKERS),
        maximum_concurrent_rpcs=_MAX_CONCURRENT_RPCS,
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            # gRPC shares a taken port by default (SO_REUSEPORT), which
            # would split requests between this and another server.
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        servicer, server
    )
    wanted = _address(host, port)
    try:
        bound = server.add_insecure_port(wanted)
    except RuntimeError:  # recent grpc versions raise instead of returning 0
        bound = 0
    if bound == 0:
        raise OSError(
            f"could not listen on {wanted}: is the port taken (by TF Serving "
            "or another server)? Pick another one."
        )
    server.start()
    server.servicer = servicer
    return server, _address(host, bound)
