"""The index at scale: ScaNN's build time, memory, QPS and recall by size.

  python bench/index_scale.py --sizes=1000000,10000000

For each catalogue size, one subprocess (so each size's memory is its own)
draws clustered, L2-normalised 256-d vectors (the recipe and seed of
`bench/scann_vs_exact.py`: 2,000 Gaussian centres, cosine ~0.7 to the
centre) and 1,000 fresh queries from the same mixture, then measures, side
by side on the same vectors:
  exact        NumPy matmul + partition (`metrics.rank_exact`), the
               ground truth and the QPS baseline;
  scann        `ScannIndex.build` with `choose_index_params` (build time, peak
               RSS, the index's resident memory), searched with its
               default setting, then `tuning.tune_search` at --target_recall on
               the catalogue's own rows and searched with the tuned one;
  faiss        at --faiss_sizes, when faiss-cpu is installed (the bench
               only: pip install faiss-cpu): IVF + 4-bit PQ fast-scan +
               exact refinement and HNSW, each at the fastest setting of a
               sweep reaching --target_recall on the same queries (chosen on
               the queries themselves, which favours faiss a little).
Memory is read in the subprocess: peak RSS (getrusage's ru_maxrss) up to
the end of the ScaNN build, and resident memory (VmRSS) before and after
it; the whole subprocess's peak (including the oracle, tuning and faiss)
comes from `os.wait4`'s rusage of that child alone. A size whose estimated
peak exceeds the memory available is skipped with a message, and its build
time (a power law) and peak memory (linear) are extrapolated from the two
largest sizes measured. Every method uses all the cores it is given.

Measured on the shared 2-core machine (2026-12-01, under a load average of
4-8 from other jobs, so QPS are noisy): at 1M, the default build took 69 s
and peaked at 3.7 GiB of RSS (0.95 GiB of vectors); 3M took 313 s and 9.6
GiB; 10M (~32 GiB estimated) did not fit in 24 GiB and was extrapolated
(~1,630 s, ~30 GiB). `tune_search` at 0.95 measured 0.978 on fresh queries
at 1M with 5/1000 leaves (157x exact QPS); at 3M the default setting gave
only 0.920 and the tuned one (reorder 200) 0.960.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

import faiss_indexes  # bench/, beside this script
import synthetic_vectors

_SIZES = flags.DEFINE_list(
    "sizes", ["1000000", "10000000"], "Catalogue sizes, smallest first."
)
_DIM = flags.DEFINE_integer("dim", 256, "Embedding size.")
_NUM_QUERIES = flags.DEFINE_integer("num_queries", 1000, "Fresh queries.")
_K = flags.DEFINE_integer("k", 10, "Neighbours per query (recall@k).")
_TARGET = flags.DEFINE_float("target_recall", 0.95, "Recall to reach.")
_FAISS_SIZES = flags.DEFINE_list(
    "faiss_sizes", ["1000000"], "Sizes at which faiss is measured too."
)
_HNSW_M = flags.DEFINE_integer("hnsw_m", 32, "HNSW links per node.")
_HNSW_EF_CONSTRUCTION = flags.DEFINE_integer(
    "hnsw_ef_construction", 40, "HNSW candidates kept while building."
)
_NUM_CLUSTERS = flags.DEFINE_integer("num_clusters", 2000, "Centres.")
_SPREAD = flags.DEFINE_float("spread", 1.0, "Noise norm around a centre.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds per setting.")
_WORKER_SIZE = flags.DEFINE_integer(
    "worker_size", 0, "Internal: measure this size and write --worker_out."
)
_WORKER_OUT = flags.DEFINE_string("worker_out", None, "Internal.")

_GIB = 2**30
# The worker's peak RSS per byte of float32 vectors, assumed for the first
# size (the next ones scale the previous size's measured peak).
_FIRST_PEAK_PER_DATA_BYTE = 5.0


def _resident_bytes() -> int:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _available_bytes() -> int:
    with open("/proc/meminfo") as stream:
        for line in stream:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def _median_seconds(fn, rounds):
    """Runs fn once to warm up, then `rounds` times; (result, median s)."""
    result = fn()
    times = []
    for _ in range(rounds):
        result, seconds = _timed(fn)
        times.append(seconds)
    return result, statistics.median(times)


def _recall(found, true) -> float:
    """Recall@k of (Q, k) found rows against the (Q, k) exact ones."""
    from beau_tf.retrieval import (
        metrics,
    )  # pylint: disable=g-import-not-at-top

    return metrics.recall_against_exact(
        np.asarray(found, np.int64), true, true.shape[1]
    )


def _fastest_meeting(results, target):
    """(setting, recall, seconds): the fastest reaching target, else best."""
    good = [r for r in results if r[1] >= target]
    if good:
        return min(good, key=lambda r: r[2]), True
    return max(results, key=lambda r: r[1]), False


def _setting(params, leaves, reorder) -> str:
    if params.mode == "brute_force":
        return "brute force (exact: nothing to tune)"
    if params.mode == "tree_ah":
        return f"tree-AH {leaves}/{params.num_leaves} leaves, reorder {reorder}"
    return f"{params.mode}, reorder {reorder}"


def _scann_disk_bytes(index) -> int:
    """Bytes of the serialized searcher (what `scann/` holds on disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        index.save(tmp)
        return sum(
            os.path.getsize(os.path.join(folder, name))
            for folder, _, names in os.walk(tmp)
            for name in names
        )


def build_scann(catalogue, k):
    """Builds the default ScaNN index; (index, build row fields)."""
    from beau_tf.retrieval import (
        scann_index,
    )  # pylint: disable=g-import-not-at-top

    num_items, dim = catalogue.shape
    ids = [str(i) for i in range(num_items)]
    identity = {
        "model_name": "bench",
        "model_version": 1,
        "signature_fingerprint": "none",
        "embedding_dim": dim,
    }
    params = scann_index.choose_index_params(num_items, dim, k)
    before = _resident_bytes()
    index, build_s = _timed(
        scann_index.ScannIndex.build, catalogue, ids, identity, params
    )
    # ru_maxrss is the high-water mark: nothing larger ran before the build.
    built = {
        "build_s": build_s,
        "build_peak": _peak_bytes(),
        "index_resident": _resident_bytes() - before,
    }
    built["disk"] = _scann_disk_bytes(index)
    logging.info("ScaNN built in %.1f s: %s", build_s, built)
    return index, built


def scann_rows(index, built, catalogue, queries, true, k, target, rounds):
    """The default and the tuned settings, searched on `queries`."""
    from beau_tf.retrieval import (
        tuning,
    )  # pylint: disable=g-import-not-at-top

    params = index.params

    def measure(leaves=None, reorder=None):
        found, seconds = _median_seconds(
            lambda: index._search_rows(  # pylint: disable=protected-access
                queries, k, leaves, reorder
            )[0],
            rounds,
        )
        return _recall(found, true), seconds

    rec, seconds = measure()
    rows = [
        {
            "method": "scann default",
            "setting": _setting(
                params, params.num_leaves_to_search, params.reorder
            ),
            "recall": rec,
            "seconds": seconds,
            **built,
        }
    ]
    tuned, tune_s = _timed(
        tuning.tune_search,
        index,
        catalogue,
        target,
        num_queries=len(queries),
    )
    record = tuned.manifest["tuning"]
    rec, seconds = measure(record["num_leaves_to_search"], record["reorder"])
    rows.append(
        {
            "method": f"scann tuned, target {target}",
            "setting": _setting(
                params, record["num_leaves_to_search"], record["reorder"]
            )
            + (
                f" (sample recall {record['recall']:.3f}, "
                f"{record['settings_tried']} settings tried in {tune_s:.0f} s)"
            ),
            "recall": rec,
            "seconds": seconds,
            "tune_s": tune_s,
        }
    )
    return rows


def _faiss_rows(catalogue, queries, true, k, target, rounds):
    try:
        import faiss  # pylint: disable=g-import-not-at-top
    except ImportError:
        logging.warning(
            "faiss is not installed (pip install faiss-cpu); no faiss rows."
        )
        return [{"method": "faiss", "skipped": "faiss-cpu not installed"}]
    dim = catalogue.shape[1]
    rows = []
    ivf, nlist, build_ivf = faiss_indexes.ivf_pq_refined(faiss, catalogue)
    _, build_s = _timed(build_ivf)
    results = []
    for fraction in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2):
        nprobe = max(1, int(round(fraction * nlist)))
        for k_factor in (2, 5, 10, 20):
            search_params = faiss.IndexRefineSearchParameters(
                k_factor=k_factor,
                base_index_params=faiss.SearchParametersIVF(nprobe=nprobe),
            )
            (_, found), seconds = _timed(
                ivf.search, queries, k, params=search_params
            )
            results.append(((nprobe, k_factor), _recall(found, true), seconds))
    ((nprobe, k_factor), _, _), met = _fastest_meeting(results, target)
    search_params = faiss.IndexRefineSearchParameters(
        k_factor=k_factor,
        base_index_params=faiss.SearchParametersIVF(nprobe=nprobe),
    )
    found, seconds = _median_seconds(
        lambda: ivf.search(queries, k, params=search_params)[1], rounds
    )
    rows.append(
        {
            "method": "faiss ivf-pq" + ("" if met else " (< target)"),
            "setting": f"nprobe {nprobe}/{nlist}, k_factor {k_factor}",
            "recall": _recall(found, true),
            "seconds": seconds,
            "build_s": build_s,
            "disk": faiss.serialize_index(ivf).nbytes,
        }
    )
    ivf = None  # frees the index before HNSW is built
    hnsw = faiss.IndexHNSWFlat(dim, _HNSW_M.value, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION.value
    _, build_s = _timed(hnsw.add, catalogue)
    logging.info("HNSW built in %.1f s", build_s)
    results = []
    for ef in (16, 32, 64, 128, 256, 512, 1024):
        hnsw.hnsw.efSearch = ef
        (_, found), seconds = _timed(hnsw.search, queries, k)
        results.append((ef, _recall(found, true), seconds))
    (ef, _, _), met = _fastest_meeting(results, target)
    hnsw.hnsw.efSearch = ef
    found, seconds = _median_seconds(lambda: hnsw.search(queries, k)[1], rounds)
    rows.append(
        {
            "method": "faiss hnsw" + ("" if met else " (< target)"),
            "setting": f"M {_HNSW_M.value}, efConstruction "
            f"{_HNSW_EF_CONSTRUCTION.value}, efSearch {ef}",
            "recall": _recall(found, true),
            "seconds": seconds,
            "build_s": build_s,
            "disk": faiss.serialize_index(hnsw).nbytes,
        }
    )
    return rows


def run_worker(num_items: int, out_path: str) -> None:
    """Measures one size in this process and writes its rows as JSON."""
    from beau_tf.retrieval import (
        metrics,
    )  # pylint: disable=g-import-not-at-top

    k, target, rounds, dim = _K.value, _TARGET.value, _ROUNDS.value, _DIM.value
    start = _resident_bytes()
    rng = np.random.default_rng(_SEED.value)
    centres = synthetic_vectors.make_vectors(
        rng, _NUM_CLUSTERS.value, dim, None, 0
    )
    catalogue = synthetic_vectors.make_vectors(
        rng, num_items, dim, centres, _SPREAD.value
    )
    queries = synthetic_vectors.make_vectors(
        rng, _NUM_QUERIES.value, dim, centres, _SPREAD.value
    )
    logging.info(
        "%d vectors drawn (%.2f GiB)", num_items, catalogue.nbytes / _GIB
    )
    index, built = build_scann(catalogue, k)
    metrics.rank_exact(queries[:10], catalogue, k)  # Warm-up.
    (true, _), exact_s = _timed(metrics.rank_exact, queries, catalogue, k)
    rows = [
        {
            "method": "exact",
            "setting": "NumPy matmul + partition",
            "recall": 1.0,
            "seconds": exact_s,
        }
    ]
    rows += scann_rows(
        index, built, catalogue, queries, true, k, target, rounds
    )
    del index
    if str(num_items) in _FAISS_SIZES.value:
        rows += _faiss_rows(catalogue, queries, true, k, target, rounds)
    result = {
        "num_items": num_items,
        "num_queries": len(queries),
        "start_resident": start,
        "data_bytes": catalogue.nbytes,
        "rows": rows,
    }
    with open(out_path, "w") as stream:
        json.dump(result, stream)


def measure_size(num_items: int) -> dict:
    """Runs one size in a subprocess; its result and the child's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        args = [
            sys.executable,
            os.path.abspath(__file__),
            f"--worker_size={num_items}",
            f"--worker_out={out}",
        ] + [
            f"--{name}={flags.FLAGS[name].serialize().split('=', 1)[1]}"
            for name in (
                "dim",
                "num_queries",
                "k",
                "target_recall",
                "faiss_sizes",
                "hnsw_m",
                "hnsw_ef_construction",
                "num_clusters",
                "spread",
                "seed",
                "rounds",
            )
        ]
        child = subprocess.Popen(args)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(
                f"measuring {num_items} items failed (exit "
                f"{child.returncode}); see its log above."
            )
        with open(out) as stream:
            result = json.load(stream)
    result["worker_peak"] = usage.ru_maxrss * 1024
    return result


def _fmt_gib(value) -> str:
    return "" if value is None else f"{value / _GIB:.2f}"


def print_tables(results, skipped, target, k) -> None:
    """Markdown: one row per (size, method), then the scaling by size."""
    print(
        f"\n| N | method | setting | recall@{k} | QPS | x exact | build s "
        "| peak RSS GiB (build) | index GiB on disk |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for result in results:
        exact_qps = None
        for row in result["rows"]:
            if "skipped" in row:
                print(
                    f"| {result['num_items']:,} | {row['method']} | "
                    f"skipped: {row['skipped']} | | | | | | |"
                )
                continue
            qps = result["num_queries"] / row["seconds"]
            exact_qps = exact_qps or qps
            print(
                f"| {result['num_items']:,} | {row['method']} | "
                f"{row['setting']} | {row['recall']:.3f} | {qps:,.0f} | "
                f"{qps / exact_qps:.1f} | "
                + (f"{row['build_s']:.1f}" if "build_s" in row else "")
                + f" | {_fmt_gib(row.get('build_peak'))} | "
                f"{_fmt_gib(row.get('disk'))} |"
            )
    print(
        "\n| N | vectors GiB | ScaNN build s | build s per 1M | RSS GiB "
        "before | peak RSS GiB (build) | peak / vectors | index resident "
        "GiB | worker peak GiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        scann = next(
            r for r in result["rows"] if r["method"] == "scann default"
        )
        n = result["num_items"]
        print(
            f"| {n:,} | {_fmt_gib(result['data_bytes'])} | "
            f"{scann['build_s']:.1f} | {scann['build_s'] / n * 1e6:.1f} | "
            f"{_fmt_gib(result['start_resident'])} | "
            f"{_fmt_gib(scann['build_peak'])} | "
            f"{scann['build_peak'] / result['data_bytes']:.2f} | "
            f"{_fmt_gib(scann['index_resident'])} | "
            f"{_fmt_gib(result['worker_peak'])} |"
        )
    for n in skipped:
        build_s, peak, power = extrapolate(results, n)
        print(
            f"| {n:,} (extrapolated, not run: time ~ N^{power:.2f}, "
            "memory linear) | "
            f"{n * _DIM.value * 4 / _GIB:.2f} | {build_s:.0f} | "
            f"{build_s / n * 1e6:.1f} | | {peak / _GIB:.1f} | | | |"
        )


def extrapolate(results, num_items):
    """(build s, peak bytes, time exponent) at num_items from the two
    largest sizes measured: build time as a power law c * N^p (assigning N
    points to ~sqrt(N) leaves makes it grow faster than N), peak memory
    linearly; proportional to N when only one size was measured."""
    points = sorted(
        (
            r["num_items"],
            next(x for x in r["rows"] if x["method"] == "scann default"),
        )
        for r in results
    )[-2:]
    if len(points) == 1:
        n, row = points[0]
        scale = num_items / n
        return row["build_s"] * scale, row["build_peak"] * scale, 1.0
    (n0, r0), (n1, r1) = points
    power = np.log(r1["build_s"] / r0["build_s"]) / np.log(n1 / n0)
    build_s = r1["build_s"] * (num_items / n1) ** power
    peak = r0["build_peak"] + (r1["build_peak"] - r0["build_peak"]) * (
        num_items - n0
    ) / (n1 - n0)
    return build_s, peak, power


def main(argv):
    del argv
    if _WORKER_SIZE.value:
        run_worker(_WORKER_SIZE.value, _WORKER_OUT.value)
        return
    sizes = sorted(int(n) for n in _SIZES.value)
    results, skipped = [], []
    for num_items in sizes:
        vectors = num_items * _DIM.value * 4
        if results:
            last = results[-1]
            need = last["worker_peak"] * num_items / last["num_items"]
        else:
            need = vectors * _FIRST_PEAK_PER_DATA_BYTE
        available = _available_bytes()
        if need > 0.9 * available:
            print(
                f"Skipping {num_items:,} items: about {need / _GIB:.1f} GiB "
                f"needed ({vectors / _GIB:.1f} GiB of vectors), "
                f"{available / _GIB:.1f} GiB available; extrapolated instead.",
                flush=True,
            )
            skipped.append(num_items)
            continue
        logging.info("Measuring %d items", num_items)
        results.append(measure_size(num_items))
        elapsed = time.strftime("%H:%M:%S")
        logging.info("%s: %d items done", elapsed, num_items)
    if not results:
        raise app.UsageError("No size fits in memory; pass smaller --sizes.")
    print_tables(results, skipped, _TARGET.value, _K.value)


if __name__ == "__main__":
    app.run(main)
