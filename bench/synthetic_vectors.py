"""Clustered unit vectors for the index benches (no flags; imported by
bench/scann_vs_exact.py and bench/index_scale.py, run from bench/)."""

import numpy as np

# Rows drawn at a time, so a 10M-row draw never holds a second full copy.
_CHUNK = 100_000


def normalise(x: np.ndarray) -> np.ndarray:
    """Scales each row of `x` to unit L2 norm, in place; returns `x`."""
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_vectors(rng, rows, dim, centres, spread) -> np.ndarray:
    """Draws (rows, dim) unit vectors, around `centres` when given.

    Args:
      rng: a numpy Generator.
      rows, dim: the shape.
      centres: (C, dim) unit vectors, or None for uniform directions.
      spread: noise scale around a centre.
    """
    out = np.empty((rows, dim), np.float32)
    for start in range(0, rows, _CHUNK):
        n = min(_CHUNK, rows - start)
        noise = normalise(rng.standard_normal((n, dim), np.float32))
        if centres is None:
            out[start : start + n] = noise
        else:
            picked = centres[rng.integers(len(centres), size=n)]
            out[start : start + n] = normalise(picked + spread * noise)
    return out
