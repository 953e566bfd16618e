"""Hot swap at scale: a new index version while searches keep coming.

  python -m bench.index_swap --num_items=1000000

Builds one ScaNN index folder of --num_items clustered 256-d vectors (the
recipe of `bench.index_scale`), serves it as version 1 of a base folder
through the service's own `IndexVersions`, and starts --clients threads
that search it without pause, one query at a time, each through
`versions.current` as the service's requests do. After --warm_seconds a
byte-for-byte copy appears as version 2 (renamed into place, as
`python -m beau_tf.index` writes one), and `IndexVersions.poll` (what the
service's polling thread calls) loads, checks and swaps it in while the
clients go on; they stop --after_seconds later. Measured in this process:

  swap s         poll's load (checksums included), check and swap
  anonymous GiB  sampled every 0.1 s: before the swap, its peak while two
                 versions are held, and after it (the old one released)
  searches       answered before, during and after the swap, failures, and
                 latency p50/p99 of each stretch

The service's HTTP layer and embedding are not in this bench (they do not
touch the index); bench.serve_load times them. Writes
bench/results/index_swap.json; figures in bench/RESULTS.md ("Scale").
"""

import os
import shutil
import threading
import time

from absl import flags
from absl import logging
import numpy as np

from beau_tf.common import memory
from bench import harness
from bench import indexing

_NUM_ITEMS = flags.DEFINE_integer("num_items", 1_000_000, "Catalogue size.")
_DIM = flags.DEFINE_integer("dim", 256, "Embedding size.")
_CLIENTS = flags.DEFINE_integer("clients", 8, "Searching threads.")
_WARM = flags.DEFINE_float(
    "warm_seconds", 10.0, "Searching before version 2 appears."
)
_AFTER = flags.DEFINE_float(
    "after_seconds", 10.0, "Searching after the swap ends."
)
_K = flags.DEFINE_integer("k", 10, "Results per search.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")

SMOKE = {
    "num_items": 20_000,
    "dim": 16,
    "clients": 2,
    "warm_seconds": 1.0,
    "after_seconds": 1.0,
}

_GIB = 2**30


class MemorySampler:
    """The process's anonymous memory, sampled every 0.1 s in a thread."""

    def __init__(self):
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(
                (time.perf_counter(), memory.process_bytes()[1])
            )
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, stop: float) -> int:
        return max(
            (b for t, b in self.samples if start <= t <= stop), default=0
        )


def build_version(base: str, num_items: int, dim: int, seed: int) -> str:
    """Version 1 under `base`: a ScaNN index folder of clustered vectors."""
    from beau_tf.retrieval import index_dir as index_dir_lib

    rng = np.random.default_rng(seed)
    centres = indexing.make_vectors(rng, 2000, dim, None, 0)
    vectors = indexing.make_vectors(rng, num_items, dim, centres, 1.0)
    ids = [str(i) for i in range(num_items)]
    identity = {
        "model_name": "bench",
        "model_version": 1,
        "signature_fingerprint": "none",
        "embedding_dim": dim,
    }
    folder = os.path.join(base, "1")
    index_dir_lib.build_and_save(
        index_dir_lib.EmbeddedCatalog(vectors, ids, [""] * num_items, identity),
        folder,
    )
    return folder


def search_until(versions, queries, k, stop, log, failures):
    """Searches one query at a time until `stop` is set, as a request
    does: the served index read once per search."""
    rng = np.random.default_rng(threading.get_ident() % 2**32)
    while not stop.is_set():
        query = queries[rng.integers(len(queries))][None]
        start = time.perf_counter()
        try:
            served = versions.current
            served.bundle.index.search(query, k)
        except Exception as error:  # pylint: disable=broad-exception-caught
            failures.append(repr(error))
            continue
        log.append((start, time.perf_counter() - start, served.version))


def _stretch(log, start, stop) -> dict:
    latencies = [s for t, s, _ in log if start <= t < stop]
    if not latencies:
        return {"searches": 0}
    return {
        "searches": len(latencies),
        "per_s": len(latencies) / (stop - start),
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


def main(argv):
    del argv
    from beau_tf.search_service import index_versions

    base = os.path.join(harness.work_dir(), "versions")
    first, build_s = harness.timed(
        build_version, base, _NUM_ITEMS.value, _DIM.value, _SEED.value
    )
    # Version 2, copied beside the base now and renamed in at swap time.
    staged = os.path.join(harness.work_dir(), "staged-2")
    shutil.copytree(first, staged)
    expected = None

    def check(bundle):
        bundle.index.check_compatible(expected or bundle.index.model_identity)

    versions = index_versions.IndexVersions(base, check)
    load_initial_s = harness.timed(versions.load_initial)[1]
    expected = versions.current.bundle.index.model_identity
    rng = np.random.default_rng(_SEED.value + 1)
    queries = np.asarray(
        versions.current.bundle.embeddings[
            np.sort(rng.choice(_NUM_ITEMS.value, 1000, replace=False))
        ]
    )
    log, failures, stop = [], [], threading.Event()
    clients = [
        threading.Thread(
            target=search_until,
            args=(versions, queries, _K.value, stop, log, failures),
        )
        for _ in range(_CLIENTS.value)
    ]
    with MemorySampler() as memory:
        begun = time.perf_counter()
        for client in clients:
            client.start()
        time.sleep(_WARM.value)
        os.rename(staged, os.path.join(base, "2"))
        swap_start = time.perf_counter()
        swapped = versions.poll()
        swap_end = time.perf_counter()
        time.sleep(_AFTER.value)
        stop.set()
        for client in clients:
            client.join()
        ended = time.perf_counter()
        time.sleep(0.3)  # one more sample after the old version is gone
    if not swapped or versions.current.version != 2:
        raise RuntimeError("version 2 was not swapped in; see the log above.")
    before = _stretch(log, begun + 1.0, swap_start)  # after a second's warm-up
    during = _stretch(log, swap_start, swap_end)
    after = _stretch(log, swap_end, ended)
    row = {
        "num_items": _NUM_ITEMS.value,
        "dim": _DIM.value,
        "clients": _CLIENTS.value,
        "build_s": build_s,
        "load_initial_s": load_initial_s,
        "swap_s": swap_end - swap_start,
        "anon_before": memory.peak(begun, swap_start),
        "anon_peak_during": memory.peak(swap_start, swap_end),
        "anon_after": memory.peak(ended, time.perf_counter()),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "versions_served_after": sorted(
            {v for t, _, v in log if t >= swap_end}
        ),
        "before": before,
        "during": during,
        "after": after,
    }
    logging.info("Swap: %s", row)
    print(
        f"\n{_NUM_ITEMS.value:,} x {_DIM.value}, {_CLIENTS.value} clients: "
        f"swap (load, check, swap) {row['swap_s']:.1f} s; anonymous memory "
        f"{row['anon_before'] / _GIB:.2f} GiB before, "
        f"{row['anon_peak_during'] / _GIB:.2f} at the peak of the swap, "
        f"{row['anon_after'] / _GIB:.2f} after; {len(failures)} failed"
    )
    print("\n| stretch | searches | per s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, stretch in (
        ("before", before),
        ("during", during),
        ("after", after),
    ):
        if stretch["searches"]:
            print(
                f"| {name} | {stretch['searches']:,} | {stretch['per_s']:,.0f} "
                f"| {stretch['p50_ms']:.2f} | {stretch['p99_ms']:.2f} |"
            )
        else:
            print(f"| {name} | 0 | | | |")
    harness.write_results([row])


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
