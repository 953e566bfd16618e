"""Synthetic catalogue products: package designs drawn on pure white.

`render_product` draws a cosmetics or grocery package (bottle, jar, tube, box,
lipstick, compact, pump) on pure white: a shaded body, a cap, a patterned label
with a brand word (`designs` says what it looks like, `shapes` draws it).
Some print is white, so a mask must keep white pixels inside the product.

`product_sprite` gives the same product cut out, for `scenes` to place in a
photo, and `stranger_sprite` a package that is in no catalogue.

Every image is a pure function of its indices and `seed` (see `randomness`).
"""

import functools

import numpy as np

from beau_tf.datasets.synthetic import canvas
from beau_tf.datasets.synthetic import designs
from beau_tf.datasets.synthetic import shapes


def _render_layer(spec: designs.ProductSpec, size: int) -> np.ndarray:
    """Draws a product alone: (size, size, 4) uint8, RGB premultiplied by alpha.

    Drawn at 2-4x and box-filtered down, which antialiases every edge.
    """
    ss = max(2, -(-256 // size))
    cv = canvas.Canvas(size * ss)
    shapes.draw_package(cv, spec.form, spec.label)

    def box_filter(a):  # Summing strided views: much faster than reshape+mean.
        return (
            sum(a[i::ss, j::ss] for i in range(ss) for j in range(ss)) / ss**2
        )

    alpha = box_filter(cv.alpha) * 255.0
    layer = np.empty((size, size, 4), np.uint8)
    layer[..., :3] = np.round(np.clip(box_filter(cv.rgb), 0, alpha[..., None]))
    layer[..., 3] = np.round(alpha)
    return layer


def _crop_to_alpha(layer: np.ndarray) -> np.ndarray:
    """A layer cropped to its alpha's bounding box: a sprite, (h, w, 4)."""
    rows = np.flatnonzero(layer[..., 3].any(axis=1))
    cols = np.flatnonzero(layer[..., 3].any(axis=0))
    return layer[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


@functools.lru_cache(maxsize=64)
def _product_layer(product_index: int, size: int, seed: int) -> np.ndarray:
    """Catalogue product `product_index` alone, cached: queries reuse it."""
    layer = _render_layer(designs.product_spec(product_index, seed), size)
    layer.setflags(write=False)
    return layer


@functools.lru_cache(maxsize=64)
def product_sprite(product_index: int, size: int, seed: int) -> np.ndarray:
    """Catalogue product `product_index` cut out: (h, w, 4), premultiplied."""
    return _crop_to_alpha(_product_layer(product_index, size, seed))


def stranger_sprite(rng: np.random.Generator, size: int) -> np.ndarray:
    """A package that is in no catalogue: other goods on the shelf.

    Drawn at half resolution (it is never large in a scene) with a design
    from `rng`, which no catalogue product shares.
    """
    spec = designs.random_spec(rng)
    return _crop_to_alpha(_render_layer(spec, max(16, size // 2)))


def check_product_index(
    product_index: int, num_products: int | None = None
) -> None:
    """Raises ValueError unless the index is >= 0 and below `num_products`."""
    if num_products is None:
        if product_index < 0:
            raise ValueError(
                f"product_index={product_index} must be non-negative."
            )
    elif not 0 <= product_index < num_products:
        raise ValueError(
            f"product_index={product_index} is out of range "
            f"[0, {num_products}) for num_products={num_products}."
        )


def check_size_and_seed(size: int, seed: int) -> None:
    """Raises ValueError on a size below 16 or a negative seed."""
    if size < 16:
        raise ValueError(f"size={size} is too small; use at least 16 pixels.")
    if seed < 0:
        raise ValueError(f"seed={seed} must be non-negative.")


def render_product(
    product_index: int, size: int = 256, seed: int = 0
) -> np.ndarray:
    """Renders catalogue image `product_index`: the product on pure white.

    Args:
      product_index: which product, >= 0; the same index always draws the same
        product, whatever the catalogue size.
      size: output height and width in pixels, >= 16.
      seed: selects a different catalogue, >= 0.

    Returns:
      `(size, size, 3)` uint8; the border is exactly 255.

    Raises:
      ValueError: on a negative index or seed, or a size below 16.
    """
    check_product_index(product_index)
    check_size_and_seed(size, seed)
    layer = _product_layer(product_index, size, seed).astype(np.int16)
    return (layer[..., :3] + (255 - layer[..., 3:])).astype(np.uint8)
