"""Keyed randomness: every synthetic image is a pure function of its indices.

An image's randomness comes from `numpy.random.Generator(PCG64)` keyed by
(seed, stream, indices), so no image depends on how many others are drawn.
"""

import numpy as np

# Independent streams, one per kind of image.
PRODUCT_STREAM, QUERY_STREAM, BACKGROUND_STREAM = 1, 2, 3


def keyed_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator for `key` under `seed`: same key, same numbers."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, *key]))
    )


def pick(rng: np.random.Generator, options):
    """One of `options`, uniformly at random."""
    return options[int(rng.integers(len(options)))]
