r"""Serves product search over HTTP: upload a photo, get catalogue products.

  python -m beau_tf.serve --index=indexes/ --model=exported/beau_tf/1 \
      [--host=127.0.0.1] [--port=8080] [--max_batch=16] \
      [--batch_timeout_ms=5] [--index_poll_seconds=10]

  curl -F image=@photo.jpg 'http://127.0.0.1:8080/search?k=5'

With --server=localhost:8500 photos are embedded by TF Serving over gRPC
instead of a local SavedModel (--runtime=openvino-int8 or openvino, openvino-bf16
runs the local model's copy converted by python -m beau_tf.convert); TF Serving is asked for the model version the
index served first names, for as long as the service runs. --index is one
index folder, or a base folder of numbered versions (indexes/1, indexes/2,
...): the highest is served, and a newer one is swapped in while the service
runs if it was built with the same model (else it is refused, and logged). Loading takes
a while: /healthz answers at once, /readyz once the model and the index are
loaded, and / serves a web page. The service binds to this machine only
unless --host says otherwise; it has no authentication. Endpoints and errors:
beau_tf/search_service/app.py. Ctrl-C or SIGTERM stops it in order: it prints
"stopped" and exits 0.
"""

import functools
import signal
import sys

from absl import app as absl_app
from absl import flags
from absl import logging
import uvicorn

from beau_tf.common import cli
from beau_tf.search_service import app as app_lib
from beau_tf.search_service import embedders
from beau_tf.search_service import index_versions
from beau_tf.search_service import searcher as searcher_lib
from beau_tf.serving import runtimes

_DEFAULTS = searcher_lib.ServiceConfig()

_INDEX = flags.DEFINE_string(
    "index",
    None,
    "Index folder, or a base folder of numbered index versions.",
    required=True,
)
_MODEL = flags.DEFINE_string(
    "model", None, "Exported SavedModel version directory (local embedding)."
)
_SERVER = flags.DEFINE_string(
    "server", None, "TF Serving gRPC address host:port (remote embedding)."
)
_TIMEOUT = flags.DEFINE_float("timeout", 10.0, "gRPC timeout, seconds.")
_RUNTIME = flags.DEFINE_enum(
    "runtime", runtimes.TENSORFLOW, runtimes.NAMES, runtimes.FLAG_HELP
)
_HOST = flags.DEFINE_string(
    "host", "127.0.0.1", "Address to listen on; 0.0.0.0 for every network."
)
_PORT = flags.DEFINE_integer("port", 8080, "Port to listen on.")
_MAX_BATCH = flags.DEFINE_integer(
    "max_batch",
    _DEFAULTS.max_batch,
    "Most concurrent uploads embedded by one model call; 1: no batching.",
)
_BATCH_TIMEOUT_MS = flags.DEFINE_float(
    "batch_timeout_ms",
    _DEFAULTS.batch_timeout_ms,
    "How long a batch waits for more uploads after its first, ms.",
)
_INDEX_POLL_SECONDS = flags.DEFINE_float(
    "index_poll_seconds",
    _DEFAULTS.index_poll_seconds,
    "How often a base folder is checked for a newer index version.",
)
_MAX_UPLOAD_MB = flags.DEFINE_float(
    "max_upload_mb",
    _DEFAULTS.max_upload_bytes / 2**20,
    "Largest upload accepted, MiB.",
)
_MAX_MEGAPIXELS = flags.DEFINE_float(
    "max_megapixels",
    _DEFAULTS.max_pixels / 1e6,
    "Most pixels an upload may have, millions.",
)


def make_model_loader(
    model_dir, server, index, timeout_seconds, runtime=runtimes.TENSORFLOW
):
    """The `Searcher`'s model loader for --model (run by `runtime`) or
    --server."""
    if model_dir:
        return functools.partial(embedders.load_local_model, model_dir, runtime)
    return lambda: embedders.connect_to_server(
        server, index_versions.newest_model_identity(index), timeout_seconds
    )


def serve_until_stopped(server: uvicorn.Server) -> bool:
    """Runs `server` until Ctrl-C or SIGTERM; returns whether one stopped it.

    uvicorn shuts down in order on either signal, then raises it again for
    the handler it found. Ours only notes it, so a stopped server ends
    cleanly (exit 0) rather than as an interrupted command (cli.run's 130).
    """
    stopped_by = []
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {
        sig: signal.signal(sig, lambda signum, _: stopped_by.append(signum))
        for sig in handled
    }
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return bool(stopped_by)


def main(argv):
    if len(argv) > 1:
        raise absl_app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if bool(_MODEL.value) == bool(_SERVER.value):
        raise absl_app.UsageError("Pass exactly one of --model and --server.")
    config = searcher_lib.ServiceConfig(
        max_batch=_MAX_BATCH.value,
        batch_timeout_ms=_BATCH_TIMEOUT_MS.value,
        index_poll_seconds=_INDEX_POLL_SECONDS.value,
        max_upload_bytes=int(_MAX_UPLOAD_MB.value * 2**20),
        max_pixels=int(_MAX_MEGAPIXELS.value * 1e6),
    )
    index_versions.check_index_path(_INDEX.value)
    searcher = searcher_lib.Searcher(
        make_model_loader(
            _MODEL.value,
            _SERVER.value,
            _INDEX.value,
            _TIMEOUT.value,
            _RUNTIME.value,
        ),
        _INDEX.value,
        config,
    )
    if _HOST.value not in ("127.0.0.1", "localhost", "::1"):
        logging.warning(
            "Listening on %s: anyone who can reach it can search; the "
            "service has no authentication.",
            _HOST.value,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            app_lib.make_app(searcher), host=_HOST.value, port=_PORT.value
        )
    )
    failures = []

    def stop_serving(error):
        failures.append(error)
        server.should_exit = True

    searcher.start(on_failure=stop_serving)
    stopped = serve_until_stopped(server)
    searcher.close()
    if failures:
        sys.exit(f"error: the service could not start: {failures[0]}")
    if stopped:
        sys.stderr.write("stopped\n")


if __name__ == "__main__":
    cli.run(main)
