r"""Scores retrieval on query photos with known products.

  python -m beau_tf.evaluate --model=exported/beau_tf/1 --index=indexes/v1 \
      --queries=out/grocery/queries_val.csv [--groups=out/grocery/coarse.csv] \
      [--qe_k=3 --dba_k=3] [--json] [--visualize=val.png]

With --server=localhost:8500 instead of --model, the queries are embedded by
TF Serving over gRPC, and --runtime picks what runs a local model (see
`beau_tf.search`). Query photos that cannot be used are named in a warning
each and scored as misses (the table's `unusable` column counts them), so a
broken query list cannot score well; --skip_unusable_queries scores the
usable ones only.

Prints MAP@7 in both conventions (AP over the hits found in the top 7, as the
Perfect-500K teams computed it; and over min(|relevant|, 7)), recall@1 and
@7, for exact search and ScaNN side by side (with ScaNN's recall against
exact search), overall and per group.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging

from beau_tf.common import cli
from beau_tf.common import files
from beau_tf.common import pictures
from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import evaluation
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import metrics
from beau_tf.retrieval import query
from beau_tf.serving import grpc_client
from beau_tf.serving import runtimes

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
_INDEX = flags.DEFINE_string("index", None, "Index directory.", required=True)
_QUERIES = flags.DEFINE_string(
    "queries", None, "CSV of path,item_id query photos.", required=True
)
_GROUPS = flags.DEFINE_string(
    "groups", None, "CSV item_id,group for per-group metrics."
)
_QE_K = flags.DEFINE_integer("qe_k", 0, "α-query-expansion neighbours; 0 off.")
_QE_ALPHA = flags.DEFINE_float("qe_alpha", 3.0, "α of query expansion.")
_DBA_K = flags.DEFINE_integer(
    "dba_k", 0, "Database-side augmentation neighbours; 0 off."
)
_MULTISCALE = flags.DEFINE_boolean(
    "multiscale",
    True,
    "Embed each query as the mean over central crops (the model's "
    "query_zooms; the query_multiscale signature); --nomultiscale: one view.",
)
_ALLOW_UNKNOWN_IDS = flags.DEFINE_boolean(
    "allow_unknown_ids",
    False,
    "Score queries whose product the index lacks as misses instead of "
    "refusing the query list.",
)
_SKIP_UNUSABLE = flags.DEFINE_boolean(
    "skip_unusable_queries",
    False,
    "Score only the queries that could be used, instead of counting the "
    "others as misses.",
)
_JSON = flags.DEFINE_boolean("json", False, "Print JSON instead of a table.")
_VISUALIZE = flags.DEFINE_string(
    "visualize", None, "Contact sheet PNG of the first 12 queries."
)
_COLUMNS = [
    "method", "num_queries", "unusable", "map@7_hits", "map@7_min_relevant",
    "recall@1", "recall@7", "scann_recall@7_vs_exact",
]  # fmt: skip


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if bool(_MODEL.value) == bool(_SERVER.value):
        raise app.UsageError("Pass exactly one of --model and --server.")
    if _VISUALIZE.value:
        files.check_writable(_VISUALIZE.value, "--visualize")
    bundle = index_dir_lib.load_index(_INDEX.value)
    queries = catalog_lib.read_queries(_QUERIES.value)
    # Before any image is embedded: a query list of another catalogue.
    evaluation.check_known_ids(
        [q.item_id for q in queries],
        bundle.index.item_ids,
        _QUERIES.value,
        allow=_ALLOW_UNKNOWN_IDS.value,
    )
    try:
        embedded = query.embed_queries(
            bundle,
            [q.path for q in queries],
            model_dir=_MODEL.value,
            server=_SERVER.value,
            timeout_seconds=_TIMEOUT.value,
            multiscale=_MULTISCALE.value,
            runtime=_RUNTIME.value,
        )
    except grpc_client.ServingError as error:
        sys.exit(f"error: {error}")
    true_id = {q.path: q.item_id for q in queries}
    true_ids = [true_id[path] for path in embedded.paths]
    used = set(embedded.paths)
    missed_ids = [q.item_id for q in queries if q.path not in used]
    if missed_ids:
        logging.warning(
            "%d of %d queries could not be used (named above); %s",
            len(missed_ids),
            len(queries),
            (
                "the usable ones alone are scored (--skip_unusable_queries)."
                if _SKIP_UNUSABLE.value
                else "they are scored as misses (--skip_unusable_queries scores "
                "the usable ones only)."
            ),
        )
        if _SKIP_UNUSABLE.value:
            missed_ids = []
    groups = missed_groups = None
    if _GROUPS.value:
        group_of = evaluation.read_groups(_GROUPS.value)
        groups = [group_of.get(item_id, "other") for item_id in true_ids]
        missed_groups = [group_of.get(i, "other") for i in missed_ids]
    rows = evaluation.evaluate(
        bundle, embedded.embeddings, true_ids, groups,
        qe_k=_QE_K.value, qe_alpha=_QE_ALPHA.value, dba_k=_DBA_K.value,
        missed_ids=missed_ids, missed_groups=missed_groups,
    )  # fmt: skip
    if _JSON.value:
        print(json.dumps(rows, indent=2))
    else:
        table = [
            {**row, "unusable": row.get("unusable_queries", "")}
            for row in evaluation.table_rows(rows)
        ]
        print(metrics.format_table(table, _COLUMNS))
    if _VISUALIZE.value:
        shown = slice(0, 12)
        ids, scores = query.search(
            bundle, embedded.embeddings[shown], 5, exact=True
        )
        sheet = query.contact_sheet(
            bundle, embedded.paths[shown], ids, scores,
            relevant=[{i} for i in true_ids[shown]],
        )  # fmt: skip
        pictures.save_png(sheet, _VISUALIZE.value)


if __name__ == "__main__":
    cli.run(main)
