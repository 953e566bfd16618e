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

What it trusts and what it does not: the model and index folders are trusted
inputs, like code you run: a SavedModel is a program (its signatures may run
any TensorFlow op, file reads and writes included), so serve only exports
you made or trust. Everything a client sends is untrusted: uploads are
decoded within a memory and CPU budget, a few at a time (--max_decode_mb,
--max_concurrent_decodes), at most --max_concurrent_uploads uploads are
received and --max_concurrent_searches searches run at once (503 with
Retry-After beyond), slow clients are cut off
(--header_timeout, --body_timeout, --answer_timeout), Host names other than
the listening address's (--allowed_hosts) and posts from other sites' pages
are refused, and no answer names a path of this machine.
"""

import functools
import signal
import socket
import sys

from absl import app as absl_app
from absl import flags
from absl import logging
import uvicorn

from beau_tf.common import cli
from beau_tf.search_service import app as app_lib
from beau_tf.search_service import embedders
from beau_tf.search_service import index_versions
from beau_tf.search_service import limits
from beau_tf.search_service import searcher as searcher_lib
from beau_tf.serving import contract
from beau_tf.serving import grpc_client
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
_PORT = flags.DEFINE_integer(
    "port",
    8080,
    "Port to listen on; 0: a free one.",
    lower_bound=0,
    upper_bound=65535,
)
_ALLOWED_HOSTS = flags.DEFINE_list(
    "allowed_hosts",
    [],
    "Host names the service answers to besides the listening address's "
    "(127.0.0.1, localhost and ::1 when bound to this machine); with "
    "--host=0.0.0.0 and none given, any. '*': any.",
)
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
_MAX_DECODE_MB = flags.DEFINE_float(
    "max_decode_mb",
    _DEFAULTS.max_decode_bytes / 2**20,
    "Most memory decoding one upload may take, MiB (estimated from its "
    "header; JPEGs are decoded at reduced size).",
)
_MAX_CONCURRENT_DECODES = flags.DEFINE_integer(
    "max_concurrent_decodes",
    _DEFAULTS.max_concurrent_decodes,
    "Uploads decoded at once.",
    lower_bound=1,
)
_MAX_CONCURRENT_UPLOADS = flags.DEFINE_integer(
    "max_concurrent_uploads",
    _DEFAULTS.max_concurrent_uploads,
    "Uploads being received or answered at once; one more is answered 503 "
    "with Retry-After before it is read.",
    lower_bound=1,
)
_MAX_CONCURRENT_SEARCHES = flags.DEFINE_integer(
    "max_concurrent_searches",
    _DEFAULTS.max_concurrent_searches,
    "Searches in progress once their uploads have arrived; one more is "
    "answered 503 with Retry-After.",
    lower_bound=1,
)
_HEADER_TIMEOUT = flags.DEFINE_float(
    "header_timeout",
    _DEFAULTS.header_timeout_seconds,
    "Seconds a request's headers may take to arrive.",
)
_BODY_TIMEOUT = flags.DEFINE_float(
    "body_timeout",
    _DEFAULTS.body_timeout_seconds,
    "Seconds an upload may take to arrive (408 after).",
)
_ANSWER_TIMEOUT = flags.DEFINE_float(
    "answer_timeout",
    _DEFAULTS.answer_timeout_seconds,
    "Seconds answering may take once the upload has arrived (503 after).",
)
_MAX_CONNECTIONS = flags.DEFINE_integer(
    "max_connections",
    _DEFAULTS.max_connections,
    "Connections open at once; more are closed on arrival.",
    lower_bound=1,
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


def check_model(model_dir: str | None, server: str | None) -> None:
    """Raises, before anything listens or loads, unless --model is an export
    version folder or --server reads host:port."""
    if model_dir:
        contract.model_identity(model_dir)  # FileNotFoundError naming it
    else:
        grpc_client.check_address(server)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, so that a taken port fails now, in
    one line, before the model loads.

    Raises:
      OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(
            f"cannot listen on {host}:{port} ({error.strerror or error}): "
            "is another server using the port? Pick another --port, or "
            "--host."
        ) from None
    sock.set_inheritable(True)
    return sock


def serve_until_stopped(
    server: uvicorn.Server, sock: socket.socket | None = None
) -> bool:
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
        server.run(sockets=[sock] if sock is not None else None)
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
        max_decode_bytes=int(_MAX_DECODE_MB.value * 2**20),
        max_concurrent_decodes=_MAX_CONCURRENT_DECODES.value,
        max_concurrent_uploads=_MAX_CONCURRENT_UPLOADS.value,
        max_concurrent_searches=_MAX_CONCURRENT_SEARCHES.value,
        header_timeout_seconds=_HEADER_TIMEOUT.value,
        body_timeout_seconds=_BODY_TIMEOUT.value,
        answer_timeout_seconds=_ANSWER_TIMEOUT.value,
        max_connections=_MAX_CONNECTIONS.value,
        allowed_hosts=limits.allowed_hosts_for(
            _HOST.value, _ALLOWED_HOSTS.value
        ),
    )
    index_versions.check_index_path(_INDEX.value)
    check_model(_MODEL.value, _SERVER.value)
    sock = listen(_HOST.value, _PORT.value)
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
            app_lib.make_app(searcher),
            host=_HOST.value,
            port=sock.getsockname()[1],
            http=limits.guarded_protocol(
                config.header_timeout_seconds, config.max_connections
            ),
        )
    )
    failures = []

    def stop_serving(error):
        failures.append(error)
        server.should_exit = True

    searcher.start(on_failure=stop_serving)
    stopped = serve_until_stopped(server, sock)
    searcher.close()
    if failures:
        sys.exit(f"error: the service could not start: {failures[0]}")
    if stopped:
        sys.stderr.write("stopped\n")


if __name__ == "__main__":
    cli.run(main)
