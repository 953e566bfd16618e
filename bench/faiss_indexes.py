"""faiss baselines shared by the index benches (run from bench/; faiss-cpu is
installed for the benches only, never a beau_tf dependency)."""

import numpy as np

# Rows of the catalogue that train the coarse quantiser and the PQ codebooks.
_TRAINING_ROWS = 100_000


def ivf_pq_refined(faiss, catalogue: np.ndarray):
    """An empty IVF + 4-bit PQ fast-scan index with exact refinement, faiss's
    analogue of ScaNN's tree + AH + reorder, with about sqrt(N) lists.

    Returns:
      `(index, nlist, build)`: `build()` trains the index on at most
      ~100K rows of `catalogue` and adds all of them (callers time it).
    """
    num_items, dim = catalogue.shape
    nlist = int(round(np.sqrt(num_items)))
    index = faiss.index_factory(
        dim, f"IVF{nlist},PQ{dim // 2}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT
    )
    sample = catalogue[:: max(1, num_items // _TRAINING_ROWS)]

    def build():
        index.train(sample)
        index.add(catalogue)

    return index, nlist, build
