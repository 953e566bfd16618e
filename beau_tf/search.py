r"""Finds the catalogue products shown in photos.

  python -m beau_tf.search --index=indexes/v1 --model=exported/beau_tf/1 \
      --query=img.jpg [--query=more.jpg] [--query_dir=photos/] [--k=5] \
      [--json] [--visualize=results.png]

With --server=localhost:8500 the photos are embedded by TF Serving over gRPC
(or by `python -m beau_tf.dev_server` while developing) instead of a local
SavedModel; with --runtime=openvino-int8 (or openvino, openvino-bf16) the local
export's model runs on a copy converted by python -m beau_tf.convert. Search refuses an index built from another model (name, version
or weights) than the one embedding the queries. A photo that cannot be used
is skipped with a warning naming it; the others are answered.
"""

import json
import sys

from absl import app
from absl import flags

from beau_tf.common import cli
from beau_tf.common import files
from beau_tf.common import pictures
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import query
from beau_tf.serving import grpc_client
from beau_tf.serving import runtimes

_INDEX = flags.DEFINE_string("index", None, "Index directory.", required=True)
_QUERY = flags.DEFINE_multi_string("query", [], "Query image (repeatable).")
_QUERY_DIR = flags.DEFINE_multi_string(
    "query_dir", [], "Folder of query images, searched recursively."
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
_K = flags.DEFINE_integer("k", 5, "Results per query.")
_EXACT = flags.DEFINE_boolean(
    "exact", False, "Exact inner-product search instead of ScaNN."
)
_MULTISCALE = flags.DEFINE_boolean(
    "multiscale",
    True,
    "Embed each query as the mean over central crops (the model's "
    "query_zooms; the query_multiscale signature); --nomultiscale: one view.",
)
_JSON = flags.DEFINE_boolean("json", False, "Print JSON instead of text.")
_VISUALIZE = flags.DEFINE_string(
    "visualize", None, "Write a contact sheet PNG: each query, then its top-k."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if bool(_MODEL.value) == bool(_SERVER.value):
        raise app.UsageError("Pass exactly one of --model and --server.")
    if _VISUALIZE.value:
        files.check_writable(_VISUALIZE.value, "--visualize")
    bundle = index_dir_lib.load_index(_INDEX.value)
    paths = query.list_query_paths(_QUERY.value, _QUERY_DIR.value)
    try:
        queries = query.embed_queries(
            bundle,
            paths,
            model_dir=_MODEL.value,
            server=_SERVER.value,
            timeout_seconds=_TIMEOUT.value,
            multiscale=_MULTISCALE.value,
            runtime=_RUNTIME.value,
        )
    except grpc_client.ServingError as error:
        sys.exit(f"error: {error}")
    ids, scores = query.search(
        bundle, queries.embeddings, _K.value, _EXACT.value
    )
    if _JSON.value:
        print(json.dumps(query.results_as_json(queries.paths, ids, scores)))
    else:
        print(query.results_as_text(queries.paths, ids, scores))
    if _VISUALIZE.value:
        sheet = query.contact_sheet(bundle, queries.paths, ids, scores)
        pictures.save_png(sheet, _VISUALIZE.value)


if __name__ == "__main__":
    cli.run(main)
