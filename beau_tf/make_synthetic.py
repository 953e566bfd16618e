r"""Generates the embedded synthetic catalogue (a few seconds on one core).

  python -m beau_tf.make_synthetic --out_dir=out/synthetic \
      --num_products=24 --queries_per_product=2

Writes catalog.csv (product shots on white), queries.csv (in-the-wild photos
of the same products, with ground truth and, in query_masks/, the true mask
of each photo's product) and backgrounds/ (product-free
scenes); an existing catalogue with the same parameters is reused. See
`beau_tf.datasets.synthetic.catalogue`.
"""

from absl import app
from absl import flags
from absl import logging

from beau_tf.common import cli
from beau_tf.datasets.synthetic import catalogue as synthetic

_OUT_DIR = flags.DEFINE_string(
    "out_dir", "out/synthetic", "Directory to write (or reuse)."
)
_NUM_PRODUCTS = flags.DEFINE_integer(
    "num_products", 24, "Number of catalogue products."
)
_QUERIES_PER_PRODUCT = flags.DEFINE_integer(
    "queries_per_product", 2, "In-the-wild photos per product."
)
_NUM_BACKGROUNDS = flags.DEFINE_integer(
    "num_backgrounds", 16, "Product-free background scenes."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 256, "Height and width of every image, pixels."
)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Selects the catalogue; same seed, same bytes."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    catalog = synthetic.write_synthetic_catalog(
        _OUT_DIR.value,
        num_products=_NUM_PRODUCTS.value,
        queries_per_product=_QUERIES_PER_PRODUCT.value,
        num_backgrounds=_NUM_BACKGROUNDS.value,
        image_size=_IMAGE_SIZE.value,
        seed=_SEED.value,
    )
    logging.info(
        "Catalogue: %s (%d products)", catalog.catalog_csv, catalog.num_products
    )
    logging.info(
        "Queries: %s (%d photos)", catalog.queries_csv, catalog.num_queries
    )
    logging.info("Backgrounds: %s", catalog.backgrounds_dir)


if __name__ == "__main__":
    cli.run(main)
