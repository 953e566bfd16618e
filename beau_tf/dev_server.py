r"""Serves an export over TF Serving's gRPC API, for development only.

  python -m beau_tf.dev_server --model_base=exported/beau_tf \
      [--model_name=beau_tf] [--port=8500] [--host=127.0.0.1]

serves the latest numbered version under --model_base (as TF Serving's
--model_base_path does, but read once at start) until Ctrl-C, so that
`python -m beau_tf.search --server=127.0.0.1:8500` works without Docker. It
is a stand-in (`beau_tf.serving.prediction_service`), not for production: use TF
Serving there (export/README.md). Each request is bounded (--max_request_mb,
--max_batch, --max_request_megapixels); the model folder is trusted: a
SavedModel is a program, so serve only exports you made or trust.
"""

from absl import app
from absl import flags

from beau_tf.common import cli
from beau_tf.serving import prediction_service

_MODEL_BASE = flags.DEFINE_string(
    "model_base",
    None,
    "Folder of the model's numbered versions, e.g. exported/beau_tf.",
    required=True,
)
_MODEL_NAME = flags.DEFINE_string(
    "model_name",
    "beau_tf",
    "The name clients ask for (TF Serving's MODEL_NAME).",
)
_PORT = flags.DEFINE_integer(
    "port",
    8500,
    "gRPC port; 0 picks a free one (the line printed says it).",
    lower_bound=0,
    upper_bound=65535,
)
_MAX_REQUEST_MB = flags.DEFINE_float(
    "max_request_mb",
    prediction_service.MAX_REQUEST_BYTES / 2**20,
    "Largest request accepted, MiB.",
    lower_bound=0.001,
)
_MAX_BATCH = flags.DEFINE_integer(
    "max_batch",
    prediction_service.MAX_BATCH,
    "Most images in one request.",
    lower_bound=1,
)
_MAX_REQUEST_MEGAPIXELS = flags.DEFINE_float(
    "max_request_megapixels",
    prediction_service.MAX_REQUEST_PIXELS / 2**20,
    "Most pixels the images of one request may claim together, millions "
    "(2^20).",
    lower_bound=0.001,
)
_HOST = flags.DEFINE_string(
    "host",
    "127.0.0.1",
    "Interface to listen on; the default keeps the server on this machine.",
)


# What libjpeg and TensorFlow print for each truncated JPEG they decode.
_DAMAGED_JPEG_LINES = (b"Premature end of JPEG", b"Corrupt JPEG data")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    version, version_dir = prediction_service.latest_version(_MODEL_BASE.value)
    server, address = prediction_service.start_server(
        version_dir,
        _MODEL_NAME.value,
        version,
        host=_HOST.value,
        port=_PORT.value,
        max_request_bytes=int(_MAX_REQUEST_MB.value * 2**20),
        max_batch=_MAX_BATCH.value,
        max_request_pixels=int(_MAX_REQUEST_MEGAPIXELS.value * 2**20),
    )
    print(
        "development stand-in for TF Serving, not for production: serving "
        f"model {_MODEL_NAME.value!r} version {version} from {version_dir} "
        f"at {address} (Ctrl-C stops)",
        flush=True,
    )
    try:
        # A damaged upload is answered its status; libjpeg's and
        # TensorFlow's lines about it would only clutter the terminal.
        with cli.stderr_lines_without(*_DAMAGED_JPEG_LINES):
            server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=1.0).wait()


if __name__ == "__main__":
    cli.run(main)
