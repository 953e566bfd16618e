"""tf.data pipelines: endless augmented training pairs from prepared products.

Elements are dicts `{"image", "mask", "label", "item_id"}`:
- image: `(S, S, 3)` uint8 augmented photo;
- mask: `(S, S, 1)` float32 in {0, 1}, the visible product;
- label: int32 catalogue label; item_id: string catalogue id.

Order: products → endless per-epoch shuffle → (zip backgrounds) → enumerate
→ map(augment) → batch → prefetch. Each element's randomness comes from a stateless seed
derived from the run seed and the element's position, so a seeded run gives
the same batches however many parallel calls the map makes.

`make_photo_dataset` is the distillation loss's stream of unlabelled photos
with their teacher's soft targets, ordered and seeded the same way.
"""

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from beau_tf.data import augment
from beau_tf.data import products as products_lib


def augment_example(
    example: dict[str, tf.Tensor],
    seed: tf.Tensor,
    config: augment.AugmentConfig,
) -> dict[str, tf.Tensor]:
    """Turns one product element into one training element.

    Args:
      example: `{"sprite", "label", "item_id"}` plus an optional
        `"background"` photo `(H, W, 3)` uint8.
      seed: `(2,)` int stateless seed of this element.
      config: augmentation ranges.

    Returns:
      `{"image", "mask", "label", "item_id"}`.
    """
    image, mask = augment.augment_product(
        example["sprite"], seed, config, example.get("background")
    )
    return {
        "image": image,
        "mask": mask,
        "label": example["label"],
        "item_id": example["item_id"],
    }


_ENDLESS = 1 << 62
# Backgrounds are ordered by their own stream, apart from the products'.
_BACKGROUND_SEED_OFFSET = 1


def endless_shuffle(
    elements: Mapping[str, np.ndarray], seed: int, start_index: int = 0
) -> tf.data.Dataset:
    """The rows of `elements` forever, each epoch in its own order, from
    position `start_index` of that stream on.

    Position p reads row `index_shuffle(p mod N)` of epoch p div N, a
    permutation drawn from (seed, epoch) alone, never from state an earlier
    iterator left behind (as `shuffle(reshuffle_each_iteration=True)`
    keeps): every iterator, every worker of a multi-worker run and a run
    resumed at `start_index` read the very same stream.

    Args:
      elements: arrays with the same first dimension N (strings as str).
      seed: the stream's seed.
      start_index: the position of the first element.

    Returns:
      A dataset of dicts of one row of each array.
    """
    count = len(next(iter(elements.values())))
    rows = {name: tf.constant(array) for name, array in elements.items()}
    stream_seed = tf.constant(seed, tf.int64)

    def row_at(position):
        epoch = position // count
        index = tf.random.experimental.index_shuffle(
            position % count,
            seed=tf.stack([stream_seed, epoch]),
            max_index=count - 1,
        )
        return {name: tf.gather(row, index) for name, row in rows.items()}

    return tf.data.Dataset.range(start_index, _ENDLESS).map(row_at)


def make_train_dataset(
    products: products_lib.ProductSet,
    config: augment.AugmentConfig,
    batch_size: int,
    seed: int = 0,
    backgrounds: np.ndarray | None = None,
    drop_remainder: bool = True,
    start_index: int = 0,
) -> tf.data.Dataset:
    """Endless batches of augmented (image, mask) pairs.

    Args:
      products: sprites from `beau_tf.data.products.prepare_products`, of side
        `config.image_size`.
      config: augmentation ranges.
      batch_size: examples per batch.
      seed: the run seed; the same seed gives the same batches.
      backgrounds: optional `(N, H, W, 3)` uint8 photos (from
        `beau_tf.data.backgrounds.load_backgrounds`); procedural scenes when
        None.
      drop_remainder: keep batch shapes static (for training; the dataset is
        endless, so nothing is lost).
      start_index: position of the first element in the run's stream; a
        resumed run passes `steps done * batch_size` and continues the very
        stream an uninterrupted run reads.

    Returns:
      A dataset of dicts with batched `image (B, S, S, 3)`, `mask (B, S, S, 1)`,
      `label (B,)`, `item_id (B,)`.

    Raises:
      ValueError: sprites of another size than `config.image_size`, or no
        products.
    """
    if len(products) == 0:
        raise ValueError("make_train_dataset needs at least one product.")
    if products.sprite_size != config.image_size:
        raise ValueError(
            f"Sprites are {products.sprite_size} px but image_size is "
            f"{config.image_size}; prepare products with "
            f"sprite_size={config.image_size}."
        )
    dataset = endless_shuffle(
        {
            "sprite": products.sprites,
            "label": products.labels,
            "item_id": products.item_ids.astype(str),
        },
        seed,
        start_index,
    )
    if backgrounds is not None:
        scenes = endless_shuffle(
            {"background": backgrounds},
            seed + _BACKGROUND_SEED_OFFSET,
            start_index,
        )
        dataset = tf.data.Dataset.zip(dataset, scenes).map(
            lambda product, scene: {**product, **scene}
        )
    dataset = dataset.enumerate(start=start_index).map(
        lambda index, example: augment_example(
            example, augment.element_seed(seed, index), config
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(
        tf.data.AUTOTUNE
    )


# Photos for the distillation loss are ordered by a stream of their own.
_PHOTO_SEED_OFFSET = 2


def make_photo_dataset(
    photos: np.ndarray,
    targets: np.ndarray,
    image_size: int,
    batch_size: int,
    seed: int = 0,
    start_index: int = 0,
    photometric: augment.AugmentConfig | None = None,
    zooms: tuple[float, ...] = (),
) -> tf.data.Dataset:
    """Endless batches of randomly cropped unlabelled photos and their soft
    targets (the distillation loss's stream; `beau_tf.training.photo_targets`).

    Each photo is seen through `augment.crop_background`: a square crop of
    0.5 to 1.0 of its shorter side at a random place, resized, flipped half of
    the time; the zooms queries are embedded at fall in that range. Ordered
    and seeded as `make_train_dataset` (position-only, resumable).

    Args:
      photos: `(N, H, W, 3)` uint8 (`beau_tf.data.backgrounds.load_photos`).
      targets: `(N, K)` float32 rows summing to 1.
      image_size: side of the crops.
      batch_size: photos per batch.
      seed: the run seed.
      start_index: position of the first photo in the run's stream.
      photometric: when given, each crop also gets the colour and camera
        changes of the catalogue scenes with these ranges
        (`augment.photometric`); the crops themselves stay the same.
      zooms: for targets per view, `(N, Z, K)`: the Z zooms of the views.
        Each element is then one view of its photo, drawn at random, cut
        as `augment.crop_zoom` cuts it, with that view's target.

    Returns:
      A dataset of dicts with batched `photo (B, S, S, 3)` uint8 and
      `target (B, K)` float32.

    Raises:
      ValueError: no photos, photos and targets of different counts, or
        targets per view without their zooms (or the other way round).
    """
    if len(photos) == 0 or len(photos) != len(targets):
        raise ValueError(
            f"{len(photos)} photos and {len(targets)} targets; the same "
            "number, at least 1, expected."
        )
    per_view = targets.ndim == 3
    if per_view != bool(zooms) or (per_view and targets.shape[1] != len(zooms)):
        raise ValueError(
            f"Targets of shape {targets.shape} with zooms {tuple(zooms)}: "
            "(N, K) targets take no zooms, (N, Z, K) ones take Z zooms."
        )
    stream_seed = seed + _PHOTO_SEED_OFFSET
    dataset = endless_shuffle(
        {"photo": photos, "target": targets.astype(np.float32)},
        stream_seed,
        start_index,
    )

    def crop(index, example):
        seed = augment.element_seed(stream_seed, index)
        target = example["target"]
        if per_view:
            s_view, s_crop = augment.split_seed(seed, 2)
            view = tf.random.stateless_uniform(
                [], s_view, 0, len(zooms), tf.int32
            )
            image = augment.crop_zoom(
                example["photo"],
                s_crop,
                tf.gather(tf.constant(zooms, tf.float32), view),
                image_size,
            )
            target = tf.gather(target, view)  # (Z, K) -> (K,)
        else:
            image = augment.crop_background(example["photo"], seed, image_size)
        if photometric is not None:
            image = augment.photometric(image, seed, photometric)
        photo = tf.cast(tf.round(image * 255.0), tf.uint8)
        photo = tf.ensure_shape(photo, [image_size, image_size, 3])
        return {"photo": photo, "target": target}

    dataset = dataset.enumerate(start=start_index).map(
        crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return dataset.batch(batch_size, drop_remainder=True).prefetch(
        tf.data.AUTOTUNE
    )
