"""An in-process TF Serving stand-in: gRPC PredictionService over a SavedModel.

The TF Serving binary cannot be installed in tests, so this server speaks the
same gRPC API (`tensorflow.serving.PredictionService/Predict`) and answers with
the status codes TF Serving uses: NOT_FOUND for an unknown model or version,
FAILED_PRECONDITION for an unknown signature, INVALID_ARGUMENT for bad inputs
(e.g. undecodable image bytes). Only Predict is implemented.

    server, address = prediction_server.start_server(path, "beau_tf", 1)
    try:
        ...  # talk to `address`, e.g. "127.0.0.1:40123"
    finally:
        server.stop(0)
"""

from concurrent import futures
import threading
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

# grpc.StatusCode by the integer code TensorFlow errors share with gRPC.
_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}
_POLL_SECONDS = 0.02


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
    ):
        """Loads the SavedModel once.

        Args:
            saved_model_dir: a SavedModel with the signatures to serve.
            model_name: the name clients must ask for.
            version: the version this server reports and accepts.
            delay_seconds: how long each Predict waits before answering (ends
                early when the client gives up), to test client timeouts.
        """
        self._model = tf.saved_model.load(saved_model_dir)
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

    def Predict(self, request, context):  # pylint: disable=invalid-name
        """Runs the requested signature on the request's inputs."""
        with self._lock:
            self.requests.append(request)
        self._wait(context)
        spec = request.model_spec
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
        inputs = {
            key: tf.constant(tf.make_ndarray(proto))
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
        names = list(request.output_filter) or sorted(outputs)
        unknown = sorted(set(names) - set(outputs))
        if unknown:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output_filter names {unknown}, not outputs of "
                f"{signature_name!r} ({sorted(outputs)})",
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


def start_server(
    saved_model_dir: str,
    model_name: str,
    version: int,
    delay_seconds: float = 0.0,
) -> tuple[grpc.Server, str]:
    """Starts a PredictionService on 127.0.0.1 at a free port.

    Args:
        saved_model_dir: the SavedModel to serve.
        model_name: the model name clients must ask for.
        version: the model version to report and accept.
        delay_seconds: wait before each answer, to test client timeouts.

    Returns:
        `(server, address)`: the started grpc.Server (stop it with
        `server.stop(0)`; its servicer is `server.servicer`) and its
        "127.0.0.1:port" address.
    """
    servicer = PredictionServicer(
        saved_model_dir, model_name, version, delay_seconds
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", -1)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        servicer, server
    )
    port = server.add_insecure_port("127.0.0.1:0")  # 0: the OS picks a port.
    if port == 0:
        raise RuntimeError("could not bind a port on 127.0.0.1 for the server.")
    server.start()
    server.servicer = servicer
    return server, f"127.0.0.1:{port}"
