"""The index at scale: build time, memory, QPS and recall by catalogue size.

  python -m bench.index_scale --sizes=1000000,10000000

For each catalogue size, one subprocess (so each size's memory is its own)
draws clustered, L2-normalised 256-d vectors (the recipe and seed of
`bench.scann_vs_exact`: 2,000 Gaussian centres, cosine ~0.7 to the
centre) into embedding shards on disk, 1M rows each, and 1,000 fresh
queries from the same mixture. Then, side by side on the same vectors:
  build        `python -m beau_tf.index --merge_shards=... --target_recall`,
               what a user runs, in a process of its own: its wall time, the
               ScaNN build's own time (the manifest's build_seconds), its
               peak RSS and its peak anonymous memory (sampled; RSS also
               counts the memory-mapped catalogue, which the page cache can
               drop), the index folder's size on disk;
  load         `index_dir.load_index` of the folder: seconds (checksums
               included) and the anonymous memory it holds;
  exact        NumPy matmul + top-k over the memory-mapped catalogue
               (`metrics.rank_exact`), the ground truth and QPS baseline;
  scann        the index as built: its default setting, the setting tuned
               at --target_recall on the catalogue's own rows (what
               `beau_tf.index` ships), and the fastest setting of a sweep
               reaching the target on the queries themselves, as faiss's
               is chosen below;
  variants     at --variant_sizes, ScaNN rebuilt in this process with each
               other rescoring type (float32, bfloat16, int8), with 4
               dimensions per AH block instead of 2, without the anisotropic
               loss, and with SOAR spilling, each at the fastest setting of
               the sweep;
  faiss        at --faiss_sizes, when faiss-cpu is installed (the bench
               only: pip install faiss-cpu): IVF + 4-bit PQ fast-scan +
               refinement (faiss's analogue of ScaNN's tree + AH + reorder,
               the same 2 dimensions per code; refined in float32, float16
               or int8 as the ScaNN index rescores, and in float32 too at
               --variant_sizes: float32 refinement of 10M rows was killed
               for memory, faiss growing its 10 GiB copy by doubling), and at
               --hnsw_sizes HNSW, each at the fastest setting of a sweep
               reaching --target_recall on the same queries.
  equal recall at each of `LEVELS` (0.90 to 0.99), each engine's fastest
               setting reaching it over all its builds and sweeps (ScaNN's
               rescoring types and variants; faiss's refinements), and
               ScaNN's QPS over faiss IVF-PQ's.
Sweeps widen the leaves (nprobe) searched only while recall still grows
(`indexing.sweep_grid`), up to 200 leaves or 20 % of the lists.
A size whose estimated peak exceeds the memory available is skipped with a
message. Every method uses all the cores it is given; QPS is the median of
--rounds searches of all queries in one batch, for every swept setting.

Writes bench/results/index_scale.json: one row per (size, method), the
build and memory of each size under "sizes", the equal-recall table under
"equal_recall" and every swept point under "sweeps". Figures:
bench/RESULTS.md ("Scale").
"""

import collections
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from absl import flags
from absl import logging
import numpy as np

from beau_tf.common import files
from beau_tf.common import memory
from bench import harness
from bench import indexing

_SIZES = flags.DEFINE_list(
    "sizes", ["1000000", "10000000"], "Catalogue sizes, smallest first."
)
_DIM = flags.DEFINE_integer("dim", 256, "Embedding size.")
_NUM_QUERIES = flags.DEFINE_integer("num_queries", 1000, "Fresh queries.")
_K = flags.DEFINE_integer("k", 10, "Neighbours per query (recall@k).")
_TARGET = flags.DEFINE_float("target_recall", 0.95, "Recall to reach.")
_FAISS_SIZES = flags.DEFINE_list(
    "faiss_sizes",
    ["1000000", "10000000"],
    "Sizes at which faiss IVF-PQ is measured too.",
)
_HNSW_SIZES = flags.DEFINE_list(
    "hnsw_sizes", ["1000000"], "Sizes at which faiss HNSW is measured too."
)
_VARIANT_SIZES = flags.DEFINE_list(
    "variant_sizes",
    ["1000000"],
    "Sizes at which ScaNN is rebuilt with the other rescoring types and "
    "with SOAR.",
)
_HNSW_M = flags.DEFINE_integer("hnsw_m", 32, "HNSW links per node.")
_HNSW_EF_CONSTRUCTION = flags.DEFINE_integer(
    "hnsw_ef_construction", 120, "HNSW candidates kept while building."
)
_NUM_CLUSTERS = flags.DEFINE_integer("num_clusters", 2000, "Centres.")
_SPREAD = flags.DEFINE_float("spread", 1.0, "Noise norm around a centre.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_FIT_EMBEDDINGS = flags.DEFINE_string(
    "fit_embeddings",
    None,
    "An .npy of real embeddings (e.g. an index folder's embeddings.npy): "
    "the vectors then follow their mean and covariance spectrum "
    "(`indexing.fit_spectrum`) instead of isotropic noise; results go to "
    "index_scale-fitted.json.",
)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds per setting.")
_SCRATCH = flags.DEFINE_string(
    "scratch_dir",
    None,
    "Where each size's shards and index folder are written (about 3.5x "
    "the vectors' bytes at the peak), then removed. Default: a temporary "
    "folder.",
)
_WORKER_SIZE = flags.DEFINE_integer(
    "worker_size", 0, "Internal: measure this size and write --worker_out."
)
_WORKER_OUT = flags.DEFINE_string("worker_out", None, "Internal.")

# 100K vectors: the smallest size ScaNN partitions, so tuning has leaves to
# choose; 16-d keeps the build at seconds.
SMOKE = {
    "sizes": ["100000"],
    "faiss_sizes": ["100000"],
    "hnsw_sizes": ["100000"],
    "variant_sizes": ["100000"],
    "dim": 16,
    "num_queries": 50,
    "num_clusters": 50,
    "rounds": 1,
}

_GIB = 2**30
_SHARD_ROWS = 1_000_000
# The worker process itself (Python, NumPy, ScaNN, queries): measured
# 0.5 GiB before any vector.
_PROCESS_BYTES = 2**29
_IVF_FRACTIONS = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
_HNSW_EFS = (16, 32, 64, 128, 256, 512, 1024)
# ScaNN's sweep: leaves searched (widened while recall grows:
# `indexing.sweep_grid`) and candidates rescored.
_SCANN_LEAVES = (1, 2, 3, 4, 6, 8, 12, 20, 30, 50, 80, 120, 200)
_SCANN_REORDERS = (20, 30, 50, 100, 200, 400)
# Recall levels at which the engines are compared, each at its fastest
# swept setting reaching the level (any build of it: rescoring types,
# variants).
LEVELS = (0.90, 0.95, 0.96, 0.97, 0.98, 0.99)
# Passed on to each size's worker process.
_WORKER_FLAGS = (
    "dim",
    "num_queries",
    "k",
    "target_recall",
    "faiss_sizes",
    "hnsw_sizes",
    "variant_sizes",
    "hnsw_m",
    "hnsw_ef_construction",
    "num_clusters",
    "spread",
    "seed",
    "rounds",
    "fit_embeddings",
)
_IDENTITY = {
    "model_name": "bench",
    "model_version": 1,
    "signature_fingerprint": "none",
}


def _resident_anon() -> int:
    return memory.process_bytes()[1]


def run_measured(args: list[str]) -> dict:
    """Runs a command; its wall seconds, peak RSS (the kernel's high-water
    mark) and peak anonymous memory (sampled every 0.2 s)."""
    start = time.perf_counter()
    child = subprocess.Popen(args)
    peak_anon = 0
    done = threading.Event()

    def sample():
        nonlocal peak_anon
        while not done.wait(0.2):
            peak_anon = max(peak_anon, memory.process_bytes(child.pid)[1])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed; see its log above.")
    return {
        "wall_s": time.perf_counter() - start,
        "peak_rss": usage.ru_maxrss * 1024,
        "peak_anon": peak_anon,
    }


def write_shards(rng, num_items, dim, centres, shard_dir, spectrum) -> None:
    """Draws the catalogue into embedding shards, `_SHARD_ROWS` at a time,
    as `python -m beau_tf.index --num_shards` writes them."""
    from beau_tf.retrieval import index_dir as index_dir_lib
    from beau_tf.retrieval import shards

    identity = dict(_IDENTITY, embedding_dim=dim)
    count = -(-num_items // _SHARD_ROWS)
    for index, start in enumerate(range(0, num_items, _SHARD_ROWS)):
        rows = min(_SHARD_ROWS, num_items - start)
        ids = [str(i) for i in range(start, start + rows)]
        vectors = indexing.make_vectors(
            rng, rows, dim, centres, _SPREAD.value, spectrum
        )
        shards.save_shard(
            index_dir_lib.EmbeddedCatalog(vectors, ids, [""] * rows, identity),
            shard_dir,
            count,
            index,
        )


def _folder_bytes(folder: str) -> int:
    return sum(
        os.path.getsize(os.path.join(parent, name))
        for parent, _, names in os.walk(folder)
        for name in names
    )


def scann_sweep(index, queries, true, k, rounds):
    """`[((leaves, reorder), recall, seconds)]` over `_SCANN_LEAVES` x
    `_SCANN_REORDERS` ("tree_ah"; reorder only for "ah"), each the median of
    `rounds` searches."""
    leaves = [l for l in _SCANN_LEAVES if l <= max(1, index.params.num_leaves)]
    if index.params.mode != "tree_ah":
        leaves = [None]

    def measure(leaf, reorder):
        return _searched(index, queries, true, k, rounds, leaf, max(reorder, k))

    return indexing.sweep_grid(leaves, _SCANN_REORDERS, measure)


def _searched(index, queries, true, k, rounds, leaves=None, reorder=None):
    found, seconds = harness.median_seconds(
        lambda: index._search_rows(  # pylint: disable=protected-access
            queries, k, leaves, reorder
        )[0],
        rounds,
    )
    return indexing.recall(found, true), seconds


def scann_rows(index, queries, true, k, target, rounds, sweeps):
    """The index's default and tuned settings, and its fastest swept one;
    the sweep goes to `sweeps`."""
    from beau_tf.retrieval import scann_index

    params, tuning = index.params, index.manifest.get("tuning")
    dtype = f"{params.reorder_dtype} rescoring"
    rows = []
    # Tuning rewrote the manifest's search setting; the size's default is
    # choose_index_params' (5 % of the leaves).
    default = scann_index.choose_index_params(
        index.num_items, index.embedding_dim
    )
    leaves = default.num_leaves_to_search or None
    recall, seconds = _searched(
        index, queries, true, k, rounds, leaves, default.reorder or None
    )
    rows.append(
        {
            "method": "scann default",
            "setting": indexing.scann_setting(params, leaves, default.reorder)
            + f", {dtype}",
            "recall": recall,
            "seconds": seconds,
        }
    )
    if tuning:
        leaves, reorder = tuning["num_leaves_to_search"], tuning["reorder"]
        recall, seconds = _searched(
            index, queries, true, k, rounds, leaves or None, reorder
        )
        rows.append(
            {
                "method": f"scann tuned, target {target}",
                "setting": indexing.scann_setting(params, leaves, reorder)
                + f", {dtype} (sample recall {tuning['recall']:.3f})",
                "recall": recall,
                "seconds": seconds,
            }
        )
    rows.append(_swept_row(index, queries, true, k, target, rounds, sweeps))
    return rows


def _swept_row(index, queries, true, k, target, rounds, sweeps):
    """The fastest setting of `scann_sweep` reaching `target`; the sweep
    goes to `sweeps`."""
    params = index.params
    extra = f", SOAR {params.soar_lambda}" if params.soar_lambda else ""
    if params.dimensions_per_block != 2:
        extra += f", {params.dimensions_per_block} dimensions per AH block"
    if np.isnan(params.anisotropic_quantization_threshold):
        extra += ", no anisotropic loss"

    def setting(leaves, reorder):
        return (
            indexing.scann_setting(params, leaves, reorder)
            + f", {params.reorder_dtype} rescoring{extra}"
        )

    swept = scann_sweep(index, queries, true, k, rounds)
    sweeps.append(
        {
            "engine": "scann",
            "points": [(setting(*at), r, t) for at, r, t in swept],
        }
    )
    ((leaves, reorder), recall, seconds), met = indexing.fastest_meeting(
        swept, target
    )
    return {
        "method": "scann swept" + ("" if met else " (< target)"),
        "setting": setting(leaves, reorder),
        "recall": recall,
        "seconds": seconds,
    }


def variant_rows(catalogue, queries, true, k, target, rounds, default, sweeps):
    """ScaNN rebuilt with each other rescoring type, and with SOAR; their
    sweeps go to `sweeps`."""
    from beau_tf.retrieval import scann_index

    num_items, dim = catalogue.shape
    ids = [str(i) for i in range(num_items)]
    identity = dict(_IDENTITY, embedding_dim=dim)
    variants = [
        dataclasses.replace(default, reorder_dtype=dtype)
        for dtype in scann_index.REORDER_DTYPES
        if dtype != default.reorder_dtype
    ]
    variants += [
        dataclasses.replace(default, dimensions_per_block=4),
        dataclasses.replace(
            default, anisotropic_quantization_threshold=float("nan")
        ),
    ]
    if default.mode == "tree_ah":
        variants.append(dataclasses.replace(default, soar_lambda=1.5))
    rows = []
    for params in variants:
        index, build_s = harness.timed(
            scann_index.ScannIndex.build, catalogue, ids, identity, params
        )
        row = _swept_row(index, queries, true, k, target, rounds, sweeps)
        row.update(method="scann variant, swept", build_s=build_s)
        rows.append(row)
        del index
    return rows


def faiss_rows(
    catalogue, queries, true, k, target, rounds, hnsw, refines, sweeps
):
    """faiss IVF-PQ refined in each of `refines` (ScaNN's rescoring types:
    float32 refines in float32, bfloat16 in float16, int8 in int8), and
    HNSW when `hnsw`, each at its fastest swept setting reaching `target`;
    their sweeps go to `sweeps`."""
    faiss = indexing.import_faiss()
    if faiss is None:
        return [{"method": "faiss", "skipped": "faiss-cpu not installed"}]
    rows = []
    for rescoring in refines:
        ivf, nlist, build_ivf = indexing.ivf_pq_refined(
            faiss, catalogue, rescoring
        )
        _, build_s = harness.timed(build_ivf)
        refine = indexing.FAISS_REFINES[rescoring]
        swept = indexing.sweep_ivf(
            faiss, ivf, nlist, queries, k, true, _IVF_FRACTIONS, rounds
        )

        def setting(nprobe, k_factor, nlist=nlist, refine=refine):
            return (
                f"nprobe {nprobe}/{nlist}, k_factor {k_factor}, "
                f"{refine} refinement"
            )

        sweeps.append(
            {
                "engine": "faiss ivf-pq",
                "points": [(setting(*at), r, t) for at, r, t in swept],
            }
        )
        (at, recall, seconds), met = indexing.fastest_meeting(swept, target)
        rows.append(
            {
                "method": "faiss ivf-pq swept" + ("" if met else " (< target)"),
                "setting": setting(*at),
                "recall": recall,
                "seconds": seconds,
                "build_s": build_s,
                "disk": faiss.serialize_index(ivf).nbytes,
            }
        )
        ivf = None  # frees the index before the next is built
    if not hnsw:
        return rows
    dim = catalogue.shape[1]
    graph = faiss.IndexHNSWFlat(dim, _HNSW_M.value, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION.value
    _, build_s = harness.timed(graph.add, np.ascontiguousarray(catalogue))
    logging.info("HNSW built in %.1f s", build_s)
    swept = indexing.sweep_hnsw(graph, queries, k, true, _HNSW_EFS)
    prefix = (
        f"M {_HNSW_M.value}, efConstruction {_HNSW_EF_CONSTRUCTION.value}, "
        "efSearch "
    )
    sweeps.append(
        {
            "engine": "faiss hnsw",
            "points": [(f"{prefix}{ef}", r, t) for ef, r, t in swept],
        }
    )
    (ef, _, _), met = indexing.fastest_meeting(swept, target)
    graph.hnsw.efSearch = ef
    found, seconds = harness.median_seconds(
        lambda: graph.search(queries, k)[1], rounds
    )
    rows.append(
        {
            "method": "faiss hnsw swept" + ("" if met else " (< target)"),
            "setting": f"{prefix}{ef}",
            "recall": indexing.recall(found, true),
            "seconds": seconds,
            "build_s": build_s,
        }
    )
    return rows


def run_worker(num_items: int, out_path: str, scratch: str) -> None:
    """Measures one size in this process and writes its rows as JSON."""
    from beau_tf.retrieval import index_dir as index_dir_lib
    from beau_tf.retrieval import metrics

    k, target, rounds, dim = _K.value, _TARGET.value, _ROUNDS.value, _DIM.value
    rng = np.random.default_rng(_SEED.value)
    spectrum = None
    if _FIT_EMBEDDINGS.value:
        spectrum = indexing.fit_spectrum(np.load(_FIT_EMBEDDINGS.value))
        dim = spectrum.mean.shape[0]
    centres = indexing.make_vectors(
        rng, _NUM_CLUSTERS.value, dim, None, 0, spectrum
    )
    shard_dir, index_dir = (
        os.path.join(scratch, n) for n in ("shards", "index")
    )
    os.makedirs(shard_dir)
    _, draw_s = harness.timed(
        write_shards, rng, num_items, dim, centres, shard_dir, spectrum
    )
    queries = indexing.make_vectors(
        rng, _NUM_QUERIES.value, dim, centres, _SPREAD.value, spectrum
    )
    logging.info("%d vectors drawn into shards in %.0f s", num_items, draw_s)
    built = run_measured(
        harness.module_command(
            "beau_tf.index",
            f"--merge_shards={shard_dir}",
            f"--index_dir={index_dir}",
            f"--target_recall={target}",
        )
    )
    shutil.rmtree(shard_dir)
    built["disk"] = _folder_bytes(index_dir)
    before = _resident_anon()
    bundle, built["load_s"] = harness.timed(index_dir_lib.load_index, index_dir)
    built["index_anon"] = _resident_anon() - before
    index = bundle.index
    built["build_s"] = index.manifest["build_seconds"]
    built["training_rows"] = index.manifest.get("training_rows")
    logging.info("Built and loaded: %s", built)
    catalogue = bundle.embeddings  # memory-mapped
    metrics.rank_exact(queries[:10], catalogue, k)  # Warm-up.
    (true, _), exact_s = harness.timed(
        metrics.rank_exact, queries, catalogue, k
    )
    rows = [
        {
            "method": "exact",
            "setting": "NumPy matmul + top-k, memory-mapped",
            "recall": 1.0,
            "seconds": exact_s,
        }
    ]
    sweeps = []
    rows += scann_rows(index, queries, true, k, target, rounds, sweeps)
    rows[1].update(build_s=built["build_s"], disk=built["disk"])
    default = index.params
    del index, bundle
    result = {
        "num_items": num_items,
        "num_queries": len(queries),
        "data_bytes": num_items * dim * 4,
        "dim": dim,
        "built": built,
        "rows": rows,
        "sweeps": sweeps,
    }
    # Written after each stage, so a stage that fails (or is killed) loses
    # only its own rows.
    files.write_json_atomically(out_path, result)
    variants = str(num_items) in _VARIANT_SIZES.value
    if variants:
        rows += variant_rows(
            catalogue, queries, true, k, target, rounds, default, sweeps
        )
        files.write_json_atomically(out_path, result)
    # faiss refines as the index rescores and, where ScaNN's variants have
    # float32 rescoring too, in float32.
    refines = dict.fromkeys(
        [default.reorder_dtype] + (["float32"] if variants else [])
    )
    if str(num_items) in _FAISS_SIZES.value:
        rows += faiss_rows(
            catalogue,
            queries,
            true,
            k,
            target,
            rounds,
            hnsw=str(num_items) in _HNSW_SIZES.value,
            refines=list(refines),
            sweeps=sweeps,
        )
        files.write_json_atomically(out_path, result)


def measure_size(num_items: int) -> dict:
    """Runs one size in a subprocess; its result and the child's peak RSS."""
    with tempfile.TemporaryDirectory(dir=_SCRATCH.value) as tmp:
        out = os.path.join(tmp, "result.json")
        args = harness.module_command(
            "bench.index_scale",
            f"--worker_size={num_items}",
            f"--worker_out={out}",
            f"--scratch_dir={tmp}",
            *(flags.FLAGS[name].serialize() for name in _WORKER_FLAGS),
        )
        try:
            measured = run_measured(args)
        except RuntimeError as error:
            if not os.path.exists(out):
                raise
            # The rows measured before the failure, and the failure.
            logging.error("%s; keeping the rows measured before it.", error)
            measured = {"peak_rss": None, "peak_anon": None}
        with open(out) as stream:
            result = json.load(stream)
        if measured["peak_rss"] is None:
            result["rows"].append(
                {"method": "(the rest)", "skipped": "the worker failed"}
            )
    result["worker_peak_rss"] = measured["peak_rss"]
    result["worker_peak_anon"] = measured["peak_anon"]
    return result


def estimated_need(num_items: int, dim: int) -> int:
    """Bytes the worker and its build may hold at once: the larger of the
    ScaNN build's estimate and faiss's float32 copy (the catalogue itself
    stays on disk, memory-mapped)."""
    from beau_tf.retrieval import scann_index

    params = scann_index.choose_index_params(num_items, dim)
    need = scann_index.estimate_memory(num_items, dim, params)
    if str(num_items) in _FAISS_SIZES.value:
        need = max(need, num_items * dim * 4 * 1.1)
    return int(need) + 2 * _PROCESS_BYTES


def method_rows(results) -> list[dict]:
    """One row per (size, method), with QPS and its ratio to exact's."""
    rows = []
    for result in results:
        exact_qps = None
        for row in result["rows"]:
            line = {"N": result["num_items"], **row}
            if "seconds" in row:
                qps = result["num_queries"] / row["seconds"]
                exact_qps = exact_qps or qps
                line.update(QPS=qps, x_exact=qps / exact_qps)
            rows.append(line)
    return rows


def frontier_rows(results) -> list[dict]:
    """Equal recall: for each size and each of `LEVELS`, each engine's
    fastest swept setting reaching it (over all its builds), and ScaNN's QPS
    over faiss IVF-PQ's."""
    rows = []
    for result in results:
        points = collections.defaultdict(list)
        for sweep in result.get("sweeps", []):
            points[sweep["engine"]] += sweep["points"]
        fronts = {
            engine: indexing.frontier(found, LEVELS)
            for engine, found in points.items()
        }
        for level in LEVELS:
            row = {"N": result["num_items"], "recall_at_least": level}
            for engine, front in fronts.items():
                if level in front:
                    setting, recall, seconds = front[level]
                    row[engine] = {
                        "setting": setting,
                        "recall": recall,
                        "QPS": result["num_queries"] / seconds,
                    }
            if "scann" in row and "faiss ivf-pq" in row:
                row["scann_over_faiss"] = (
                    row["scann"]["QPS"] / row["faiss ivf-pq"]["QPS"]
                )
            rows.append(row)
    return rows


def size_rows(results) -> list[dict]:
    """One row per size: the index build's time and memory."""
    return [
        {
            "N": result["num_items"],
            "data_bytes": result["data_bytes"],
            **result["built"],
            "worker_peak_rss": result["worker_peak_rss"],
            "worker_peak_anon": result["worker_peak_anon"],
        }
        for result in results
    ]


def _fmt_gib(value) -> str:
    return "" if value is None else f"{value / _GIB:.2f}"


def _fmt_point(point) -> str:
    if point is None:
        return "not reached"
    return (
        f"{point['recall']:.3f} at {point['QPS']:,.0f} QPS: {point['setting']}"
    )


def print_tables(rows, sizes, frontier, k) -> None:
    """Markdown: one row per (size, method), the build by size, and the
    engines at equal recall."""
    print(
        f"\n| N | method | setting | recall@{k} | QPS | x exact | build s "
        "| index GiB on disk |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['N']:,} | {row['method']} | {row['skipped']} |||||")
            continue
        build = f"{row['build_s']:.1f}" if "build_s" in row else ""
        print(
            f"| {row['N']:,} | {row['method']} | {row['setting']} | "
            f"{row['recall']:.3f} | {row['QPS']:,.0f} | "
            f"{row['x_exact']:.1f} | {build} | {_fmt_gib(row.get('disk'))} |"
        )
    print(
        "\n| N | vectors GiB | `beau_tf.index --merge_shards` s | ScaNN "
        "build s | training rows | peak RSS GiB | peak anonymous GiB | "
        "load s | loaded index, anonymous GiB | folder GiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        print(
            f"| {size['N']:,} | {_fmt_gib(size['data_bytes'])} | "
            f"{size['wall_s']:.0f} | {size['build_s']:.0f} | "
            f"{size['training_rows'] or ''} | {_fmt_gib(size['peak_rss'])} | "
            f"{_fmt_gib(size['peak_anon'])} | {size['load_s']:.1f} | "
            f"{_fmt_gib(size['index_anon'])} | {_fmt_gib(size['disk'])} |"
        )
    print(
        f"\n| N | recall@{k} at least | ScaNN | faiss IVF-PQ | ScaNN / faiss "
        "QPS |"
    )
    print("|---|---:|---|---|---:|")
    for row in frontier:
        ratio = row.get("scann_over_faiss")
        print(
            f"| {row['N']:,} | {row['recall_at_least']} | "
            f"{_fmt_point(row.get('scann'))} | "
            f"{_fmt_point(row.get('faiss ivf-pq'))} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} |"
        )


def main(argv):
    del argv
    if _WORKER_SIZE.value:
        run_worker(_WORKER_SIZE.value, _WORKER_OUT.value, _SCRATCH.value)
        return
    results = []
    for num_items in sorted(int(n) for n in _SIZES.value):
        need, available = (
            estimated_need(num_items, _DIM.value),
            memory.available_bytes(),
        )
        if need > 0.9 * available:
            print(
                f"Skipping {num_items:,} items: about {need / _GIB:.1f} GiB "
                f"needed, {available / _GIB:.1f} GiB available.",
                flush=True,
            )
            continue
        logging.info("Measuring %d items", num_items)
        results.append(measure_size(num_items))
        logging.info("%s: %d items done", time.strftime("%H:%M:%S"), num_items)
    if not results:
        raise ValueError("No size fits in memory; pass smaller --sizes.")
    rows, by_size = method_rows(results), size_rows(results)
    frontier = frontier_rows(results)
    print_tables(rows, by_size, frontier, _K.value)
    harness.write_results(
        rows,
        variant="fitted" if _FIT_EMBEDDINGS.value else None,
        sizes=by_size,
        equal_recall=frontier,
        sweeps={r["num_items"]: r.get("sweeps", []) for r in results},
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
