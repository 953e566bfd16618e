r"""Shows what the model trains on: augmented pairs with their masks overlaid.

  python -m beau_tf.preview --catalog=out/synthetic/catalog.csv \
      --background_dir=out/synthetic/backgrounds --out=out/preview.png

Each cell is one augmented photo, left as the model sees it, right with its
foreground mask tinted and outlined, captioned with the catalogue item id.
"""

from absl import flags
from absl import logging
import numpy as np

from beau_tf.common import cli
from beau_tf.common import pictures
from beau_tf.data import augment
from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import pipelines
from beau_tf.data import products as products_lib

_CATALOG = flags.DEFINE_string(
    "catalog",
    None,
    "Catalogue: a folder of images (searched recursively) or "
    "a CSV of item_id,path.",
    required=True,
)
_BACKGROUND_DIR = flags.DEFINE_string(
    "background_dir",
    None,
    "Folder of background photos (searched "
    "recursively); procedural scenes when unset.",
)
_OUT = flags.DEFINE_string("out", "preview.png", "PNG to write.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 16, "Augmented pairs shown.")
_COLUMNS = flags.DEFINE_integer("columns", 3, "Grid columns (of pairs).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Pair side in pixels.")
_PILE_PROBABILITY = flags.DEFINE_float(
    "pile_probability",
    0.0,
    "Chance that a pair shows a pile of copies of the product (as "
    "python -m beau_tf.train --pile_probability).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Run seed; same seed, same picture.")
_BAD_MASK_POLICY = flags.DEFINE_enum(
    "bad_mask_policy",
    "skip",
    products_lib.BAD_MASK_POLICIES,
    "What to do with catalogue images whose mask covers the whole frame.",
)


def preview_cells(
    batch: dict[str, np.ndarray],
) -> tuple[list[np.ndarray], list[str]]:
    """Overlaid images and captions for one batch of training elements."""
    cells = [
        np.concatenate([image, pictures.overlay_mask(image, mask)], axis=1)
        for image, mask in zip(batch["image"], batch["mask"])
    ]  # (H, 2W, 3)
    captions = [item_id.decode() for item_id in batch["item_id"]]
    return cells, captions


def main(argv):
    del argv
    config = augment.AugmentConfig(
        image_size=_IMAGE_SIZE.value, pile_probability=_PILE_PROBABILITY.value
    )
    items = catalog_lib.list_catalog(_CATALOG.value)
    products, _ = products_lib.prepare_products(
        items, config.image_size, bad_mask_policy=_BAD_MASK_POLICY.value
    )
    backgrounds = None
    if _BACKGROUND_DIR.value:
        backgrounds, _ = backgrounds_lib.load_backgrounds(
            _BACKGROUND_DIR.value,
            backgrounds_lib.stored_size(config.image_size),
        )
    dataset = pipelines.make_train_dataset(
        products,
        config,
        batch_size=_NUM_IMAGES.value,
        seed=_SEED.value,
        backgrounds=backgrounds,
    )
    batch = {key: value.numpy() for key, value in next(iter(dataset)).items()}
    cells, captions = preview_cells(batch)
    path = pictures.save_png(
        pictures.image_grid(cells, captions, _COLUMNS.value), _OUT.value
    )
    logging.info("Wrote %d augmented pairs to %s", len(cells), path)


if __name__ == "__main__":
    cli.run(main)
