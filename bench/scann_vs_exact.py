"""ScaNN against exact search: recall@k and queries/second, side by side.

  python -m bench.scann_vs_exact --num_items=100000,1000000 --dim=256 \
      --num_queries=1000

For each catalogue size, in one run on the same vectors and queries:
  exact numpy   `beau_tf.retrieval.metrics.rank_exact`: float32 matmul +
                partition, in query blocks (the ground
                truth);
  exact tf      tf.matmul + tf.math.top_k, in query batches;
  scann         `beau_tf.retrieval.scann_index.ScannIndex.build` with
                `choose_index_params`,
                then a sweep of the search-time knobs (leaves to search,
                candidates rescored) to find the fastest setting that
                reaches --target_recall;
  faiss         when faiss-cpu is installed: IVF + 4-bit PQ fast-scan with
                exact refinement (the same recipe as ScaNN's tree + AH +
                reorder), swept the same way; HNSW up to
                --faiss_hnsw_max_items, where its build stays affordable.
Every method uses all the cores it is given (BLAS, ScaNN's and faiss's
thread pools). Catalogue and queries are drawn from one mixture of Gaussians
on the sphere (`--data=clustered`; real embeddings cluster by product
family) or uniformly (`--data=random`, the hardest case for partitioning),
or read from `--embeddings` (an (N, D) .npy of real embeddings; its last
--num_queries rows become the queries).

Writes bench/results/scann_vs_exact.json: one row per (size, method) at its
chosen setting, and the whole sweep under "sweep". Figures: bench/RESULTS.md
("Index").
"""

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from beau_tf.retrieval import metrics
from bench import harness
from bench import indexing

_NUM_ITEMS = flags.DEFINE_list(
    "num_items", ["100000", "1000000"], "Catalogue sizes to measure."
)
_DIM = flags.DEFINE_integer("dim", 256, "Embedding size.")
_NUM_QUERIES = flags.DEFINE_integer("num_queries", 1000, "Queries.")
_K = flags.DEFINE_integer("k", 10, "Neighbours per query (recall@k).")
_DATA = flags.DEFINE_enum(
    "data", "clustered", ["clustered", "random"], "How vectors are drawn."
)
_NUM_CLUSTERS = flags.DEFINE_integer(
    "num_clusters", 2000, "Mixture components for --data=clustered."
)
_SPREAD = flags.DEFINE_float(
    "spread",
    1.0,
    "Noise norm around a unit centre for --data=clustered; 1.0 puts a "
    "point at cosine ~0.7 from its centre.",
)
_TARGET = flags.DEFINE_float("target_recall", 0.95, "Recall to reach.")
_FAISS_HNSW_MAX = flags.DEFINE_integer(
    "faiss_hnsw_max_items", 200_000, "Largest catalogue to build HNSW for."
)
_EMBEDDINGS = flags.DEFINE_string(
    "embeddings", None, "(N, D) .npy of real embeddings instead of --data."
)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")

# 100K vectors: the smallest size ScaNN partitions (tree-AH), so the sweep
# runs; 16-d keeps the build at seconds.
SMOKE = {
    "num_items": ["100000"],
    "dim": 16,
    "num_queries": 50,
    "num_clusters": 50,
}

_QUERY_BATCH = 100  # (100, 1M) float32 scores: 400 MB at a time.
_LEAF_FRACTIONS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)
_IVF_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def exact_tf(catalogue, queries, k):
    """Top-k rows by inner product: tf.matmul + tf.math.top_k."""
    rows = []
    for start in range(0, len(queries), _QUERY_BATCH):
        scores = tf.matmul(
            queries[start : start + _QUERY_BATCH], catalogue, transpose_b=True
        )  # (B, N)
        rows.append(tf.math.top_k(scores, k).indices.numpy())
    return np.concatenate(rows)


class Table:
    """Rows of one size, with queries/second and its ratio to exact's."""

    def __init__(self, num_items: int, num_queries: int):
        self.num_items, self.num_queries = num_items, num_queries
        self.rows, self.exact_qps = [], None

    def add(self, method, setting, rec, seconds, build_s=None):
        qps = self.num_queries / seconds
        self.exact_qps = self.exact_qps or qps
        self.rows.append(
            {
                "N": self.num_items,
                "method": method,
                "setting": setting,
                "recall": rec,
                "QPS": qps,
                "x exact": qps / self.exact_qps,
                "build s": build_s,
            }
        )


def bench_scann(catalogue, queries, true_rows, k, table, sweep):
    index, build_s = indexing.build_scann(catalogue, k)
    params = index.params
    index.search(queries, k)  # Warm-up: thread pool and caches.

    def measure(**overrides):
        (found, _), seconds = harness.timed(
            index.search, queries, k, **overrides
        )
        return indexing.recall(found, true_rows), seconds

    rec, seconds = measure()
    table.add(
        "scann default", indexing.scann_setting(params), rec, seconds, build_s
    )
    if params.mode == "brute_force":
        return
    leaves = [None]
    if params.mode == "tree_ah":
        leaves = sorted(
            {max(1, int(round(f * params.num_leaves))) for f in _LEAF_FRACTIONS}
        )
    results = []
    for leaf in leaves:
        for reorder in (20, 50, 100, 200):
            rec, seconds = measure(leaves_to_search=leaf, reorder=reorder)
            setting = indexing.scann_setting(params, leaf, reorder)
            results.append((setting, rec, seconds))
            sweep.add("scann", setting, rec, seconds)
    (setting, rec, seconds), met = indexing.fastest_meeting(
        results, _TARGET.value
    )
    label = "scann tuned" if met else "scann best (< target)"
    table.add(label, setting, rec, seconds)


def bench_faiss(catalogue, queries, true_rows, k, table, sweep):
    faiss = indexing.import_faiss()
    if faiss is None:
        table.rows.append(
            {
                "N": len(catalogue),
                "method": "faiss",
                "setting": "skipped: faiss-cpu not installed",
            }
        )
        return
    num_items, dim = catalogue.shape
    index, nlist, build = indexing.ivf_pq_refined(faiss, catalogue)
    _, build_s = harness.timed(build)
    index.search(queries, k)  # Warm-up.
    results = []
    for (nprobe, k_factor), rec, seconds in indexing.sweep_ivf(
        faiss, index, nlist, queries, k, true_rows, _IVF_FRACTIONS
    ):
        setting = f"nprobe {nprobe}/{nlist}, k_factor {k_factor}"
        results.append((setting, rec, seconds))
        sweep.add("faiss ivf-pq", setting, rec, seconds)
    (setting, rec, seconds), met = indexing.fastest_meeting(
        results, _TARGET.value
    )
    label = "faiss ivf-pq" + ("" if met else " (< target)")
    table.add(label, setting, rec, seconds, build_s)
    if num_items > _FAISS_HNSW_MAX.value:
        return
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    _, build_s = harness.timed(hnsw.add, catalogue)
    results = []
    for ef, rec, seconds in indexing.sweep_hnsw(
        hnsw, queries, k, true_rows, (16, 32, 64, 128, 256)
    ):
        results.append((f"M 32, efSearch {ef}", rec, seconds))
        sweep.add("faiss hnsw", f"M 32, efSearch {ef}", rec, seconds)
    (setting, rec, seconds), met = indexing.fastest_meeting(
        results, _TARGET.value
    )
    label = "faiss hnsw" + ("" if met else " (< target)")
    table.add(label, setting, rec, seconds, build_s)


def bench_size(catalogue, queries) -> tuple[list[dict], list[dict]]:
    """(the chosen rows, the sweep's rows) of one catalogue."""
    k = _K.value
    num_items, num_queries = len(catalogue), len(queries)
    table = Table(num_items, num_queries)
    sweep = Table(num_items, num_queries)
    metrics.rank_exact(queries[:_QUERY_BATCH], catalogue, k)  # Warm-up.
    (true_rows, _), seconds = harness.timed(
        metrics.rank_exact, queries, catalogue, k
    )
    for rows in (table, sweep):
        rows.add("exact numpy", "matmul + partition", 1.0, seconds)
    catalogue_tf = tf.constant(catalogue)
    exact_tf(catalogue_tf, queries[:_QUERY_BATCH], k)  # Warm-up.
    rows, seconds = harness.timed(exact_tf, catalogue_tf, queries, k)
    rec = indexing.recall(rows, true_rows)
    table.add("exact tf", "matmul + top_k", rec, seconds)
    del catalogue_tf
    logging.info("Exact search done for %d items", num_items)
    bench_scann(catalogue, queries, true_rows, k, table, sweep)
    logging.info("ScaNN done for %d items", num_items)
    bench_faiss(catalogue, queries, true_rows, k, table, sweep)
    return table.rows, sweep.rows


def datasets():
    """`(data name, catalogue, queries)` of each size to measure."""
    num_queries = _NUM_QUERIES.value
    if _EMBEDDINGS.value:
        vectors = indexing.normalise(
            np.load(_EMBEDDINGS.value).astype(np.float32)
        )
        if len(vectors) <= num_queries:
            raise ValueError(
                f"{_EMBEDDINGS.value} has {len(vectors)} rows; it needs more "
                f"than --num_queries={num_queries}."
            )
        yield "real", vectors[:-num_queries], vectors[-num_queries:]
        return
    rng = np.random.default_rng(_SEED.value)
    dim, spread = _DIM.value, _SPREAD.value
    centres = None
    if _DATA.value == "clustered":
        centres = indexing.make_vectors(rng, _NUM_CLUSTERS.value, dim, None, 0)
    for num_items in _NUM_ITEMS.value:
        catalogue = indexing.make_vectors(
            rng, int(num_items), dim, centres, spread
        )
        queries = indexing.make_vectors(rng, num_queries, dim, centres, spread)
        yield _DATA.value, catalogue, queries


def main(argv):
    del argv
    rows, sweep = [], []
    for data, catalogue, queries in datasets():
        chosen, swept = bench_size(catalogue, queries)
        rows += [dict(row, data=data) for row in chosen]
        sweep += swept
        del catalogue
    harness.print_table(sweep)
    harness.print_table(rows)
    harness.write_results(
        rows,
        sweep=sweep,
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
