"""What the index benches (bench.scann_vs_exact, bench.index_scale) share:
clustered unit vectors, a ScaNN build on them, recall, the fastest setting
reaching a target, and faiss's counterparts of ScaNN's recipe.

faiss-cpu is installed for these benches only (pip install faiss-cpu), never
a beau_tf dependency; without it the faiss rows say they were skipped.
"""

import dataclasses
from collections.abc import Iterable, Sequence

from absl import logging
import numpy as np

from bench import harness

# Rows drawn at a time, so a 10M-row draw never holds a second full copy.
_CHUNK = 100_000
# Rows of the catalogue that train faiss's coarse quantiser and PQ codebooks.
_FAISS_TRAINING_ROWS = 100_000
FAISS_K_FACTORS = (2, 5, 10, 20, 40)
_FAISS_ADD_ROWS = 500_000


def normalise(x: np.ndarray) -> np.ndarray:
    """Scales each row of `x` to unit L2 norm, in place; returns `x`."""
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """The shape of real embeddings: their mean and a (D, D) transform
    that turns standard normal draws into their covariance (eigenvectors
    scaled by the square roots of the eigenvalues)."""

    mean: np.ndarray  # (D,)
    transform: np.ndarray  # (D, D)


def fit_spectrum(real: np.ndarray) -> Spectrum:
    """The mean and covariance spectrum of (N, D) real embeddings."""
    real = np.asarray(real, np.float64).reshape(-1, real.shape[-1])
    mean = real.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(real, rowvar=False))
    scale = np.sqrt(np.clip(eigenvalues, 0, None))
    return Spectrum(
        mean.astype(np.float32), (eigenvectors * scale).astype(np.float32)
    )


def make_vectors(rng, rows, dim, centres, spread, spectrum=None) -> np.ndarray:
    """Draws (rows, dim) unit vectors, around `centres` when given.

    Args:
      rng: a numpy Generator.
      rows, dim: the shape.
      centres: (C, dim) unit vectors, or None for directions of their own.
      spread: noise scale around a centre (1.0: cosine ~0.7 to it).
      spectrum: when given, draws follow real embeddings' shape: centres
        are their mean plus noise of their covariance, and the noise
        around a centre has their covariance's directions (scaled to unit
        norm, then by `spread`); isotropic Gaussian directions otherwise.
    """
    out = np.empty((rows, dim), np.float32)
    for start in range(0, rows, _CHUNK):
        n = min(_CHUNK, rows - start)
        draws = rng.standard_normal((n, dim), np.float32)
        if spectrum is not None:
            draws = draws @ spectrum.transform.T
            if centres is None:
                draws += spectrum.mean
        noise = normalise(draws)
        if centres is None:
            out[start : start + n] = noise
        else:
            picked = centres[rng.integers(len(centres), size=n)]
            out[start : start + n] = normalise(picked + spread * noise)
    return out


def build_scann(catalogue: np.ndarray, k: int):
    """`(index, seconds)`: ScaNN with `choose_index_params`' defaults for
    the catalogue's size, built on it with an identity naming no model."""
    from beau_tf.retrieval import (
        scann_index,
    )  # pylint: disable=g-import-not-at-top

    num_items, dim = catalogue.shape
    identity = {
        "model_name": "bench",
        "model_version": 1,
        "signature_fingerprint": "none",
        "embedding_dim": dim,
    }
    params = scann_index.choose_index_params(num_items, dim, k)
    ids = [str(i) for i in range(num_items)]
    return harness.timed(
        scann_index.ScannIndex.build, catalogue, ids, identity, params
    )


def scann_setting(params, leaves=None, reorder=None) -> str:
    """A ScaNN search setting in words (the index's defaults when unset)."""
    leaves = params.num_leaves_to_search if leaves is None else leaves
    reorder = params.reorder if reorder is None else reorder
    if params.mode == "brute_force":
        return "brute force (exact: nothing to tune)"
    if params.mode == "tree_ah":
        return f"tree-AH {leaves}/{params.num_leaves} leaves, reorder {reorder}"
    return f"{params.mode}, reorder {reorder}"


def recall(found, true: np.ndarray) -> float:
    """recall@k of (Q, k) found rows against the (Q, k) true ones."""
    from beau_tf.retrieval import (
        metrics,
    )  # pylint: disable=g-import-not-at-top

    return metrics.recall_against_exact(
        np.asarray(found, np.int64), true, true.shape[1]
    )


def sweep_grid(outer: Sequence, inner: Sequence, measure, stop_at=0.99):
    """Measures `outer` x `inner`, widening `outer` (leaves, nprobe: each
    slower than the last) only while it still pays.

    Args:
      outer: settings in increasing cost and recall.
      inner: settings tried at each of `outer` (rescored candidates).
      measure: `(o, i) -> (recall, seconds)`.
      stop_at: the sweep stops after the first `outer` whose best recall
        reaches this, or gains less than 0.002 over the one before (the
        rescoring's precision, not the search, then limits recall).

    Returns:
      `[((o, i), recall, seconds)]`.
    """
    results, best = [], -1.0
    for o in outer:
        row = [((o, i), *measure(o, i)) for i in inner]
        results += row
        top = max(r[1] for r in row)
        if top >= stop_at or top < best + 0.002:
            break
        best = top
    return results


def frontier(points: Iterable[tuple], levels: Sequence[float]) -> dict:
    """`{level: (setting, recall, seconds)}`: the fastest of `points`
    (`(setting, recall, seconds)`) reaching each level; levels none reaches
    are left out."""
    points = list(points)
    out = {}
    for level in levels:
        good = [p for p in points if p[1] >= level]
        if good:
            out[level] = min(good, key=lambda p: p[2])
    return out


def fastest_meeting(results: Iterable[tuple], target: float):
    """`((setting, recall, seconds), met)`: the fastest result reaching
    `target`, or the one with the best recall when none does."""
    results = list(results)
    met = frontier(results, [target])
    if met:
        return met[target], True
    return max(results, key=lambda r: r[1]), False


def import_faiss():
    """The faiss module, or None (with a warning) when it is not installed."""
    try:
        import faiss  # pylint: disable=g-import-not-at-top
    except ImportError:
        logging.warning(
            "faiss is not installed (pip install faiss-cpu); no faiss rows."
        )
        return None
    return faiss


# faiss's refinement codes for each of ScaNN's rescoring types.
FAISS_REFINES = {
    "float32": "RFlat",
    "bfloat16": "Refine(SQfp16)",
    "int8": "Refine(SQ8)",
}


def ivf_pq_refined(faiss, catalogue: np.ndarray, rescoring: str = "float32"):
    """An empty IVF + 4-bit PQ fast-scan index with refinement, faiss's
    analogue of ScaNN's tree + AH + reorder, with about sqrt(N) lists; the
    refinement keeps the catalogue in float32, float16 or int8 as ScaNN's
    `rescoring` type ("float32", "bfloat16", "int8") does.

    Returns:
      `(index, nlist, build)`: `build()` trains the index on at most
      ~100K rows of `catalogue` and adds all of them (callers time it).
    """
    num_items, dim = catalogue.shape
    nlist = int(round(np.sqrt(num_items)))
    index = faiss.index_factory(
        dim,
        f"IVF{nlist},PQ{dim // 2}x4fs,{FAISS_REFINES[rescoring]}",
        faiss.METRIC_INNER_PRODUCT,
    )
    sample = catalogue[:: max(1, num_items // _FAISS_TRAINING_ROWS)]

    def build():
        index.train(sample)
        # A slice at a time: one add of 10M rows held a second float copy
        # (24 GiB at the peak, killed for memory on a 24 GiB machine).
        for start in range(0, num_items, _FAISS_ADD_ROWS):
            index.add(
                np.ascontiguousarray(catalogue[start : start + _FAISS_ADD_ROWS])
            )

    return index, nlist, build


def ivf_search_params(faiss, nprobe: int, k_factor: int):
    """Search-time settings of `ivf_pq_refined`'s index."""
    return faiss.IndexRefineSearchParameters(
        k_factor=k_factor,
        base_index_params=faiss.SearchParametersIVF(nprobe=nprobe),
    )


def sweep_ivf(
    faiss, index, nlist, queries, k, true, fractions: Sequence, rounds=1
):
    """(nprobe, k_factor) over `fractions` of `nlist` x `FAISS_K_FACTORS`,
    each timed as the median of `rounds` searches, widening nprobe only
    while recall still grows (`sweep_grid`).

    Returns:
      `[((nprobe, k_factor), recall, seconds)]`.
    """

    def measure(nprobe, k_factor):
        params = ivf_search_params(faiss, nprobe, k_factor)
        (_, found), seconds = harness.median_seconds(
            lambda: index.search(queries, k, params=params), rounds
        )
        return recall(found, true), seconds

    nprobes = sorted({max(1, int(round(f * nlist))) for f in fractions})
    return sweep_grid(nprobes, FAISS_K_FACTORS, measure)


def sweep_hnsw(hnsw, queries, k, true, efs: Sequence[int]):
    """Each efSearch of the sweep, searched once: `[(ef, recall, s)]`."""
    results = []
    for ef in efs:
        hnsw.hnsw.efSearch = ef
        (_, found), seconds = harness.timed(hnsw.search, queries, k)
        results.append((ef, recall(found, true), seconds))
    return results
