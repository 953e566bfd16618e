"""Tests for beau_tf.data.pipelines: the training stream of catalogue scenes
and the photo stream of the distillation loss."""

import functools

import numpy as np
import tensorflow as tf

from beau_tf.data import augment
from beau_tf.data import pipelines
from beau_tf.data import products as products_lib

SIZE = 32


def make_products(count: int = 3, size: int = SIZE) -> products_lib.ProductSet:
    sprites = np.zeros((count, size, size, 4), np.uint8)
    for i in range(count):
        sprites[i, 4:28, 8:24] = (60 * i, 200, 100, 255)
    return products_lib.ProductSet(
        sprites=sprites,
        labels=np.arange(count, dtype=np.int32) * 2,
        item_ids=np.array([f"item/{i}" for i in range(count)], dtype=object),
    )


def take(dataset: tf.data.Dataset, count: int) -> list[dict]:
    return [tf.nest.map_structure(np.asarray, b) for b in dataset.take(count)]


class MakeTrainDatasetTest(tf.test.TestCase):

    def test_batches_have_the_documented_shapes_and_types(self):
        config = augment.AugmentConfig(image_size=SIZE)
        batch = take(
            pipelines.make_train_dataset(make_products(), config, 2), 1
        )[0]
        self.assertEqual(set(batch), {"image", "mask", "label", "item_id"})
        self.assertEqual(batch["image"].shape, (2, SIZE, SIZE, 3))
        self.assertEqual(batch["image"].dtype, np.uint8)
        self.assertEqual(batch["mask"].shape, (2, SIZE, SIZE, 1))
        self.assertEqual(batch["mask"].dtype, np.float32)
        self.assertEqual(batch["label"].dtype, np.int32)
        # Ids travel with their labels.
        for label, item_id in zip(batch["label"], batch["item_id"]):
            self.assertEqual(item_id.decode(), f"item/{label // 2}")

    def test_seeded_run_repeats_exactly_and_seeds_differ(self):
        config = augment.AugmentConfig(image_size=SIZE)
        products = make_products()
        first = take(
            pipelines.make_train_dataset(products, config, 4, seed=5), 3
        )
        again = take(
            pipelines.make_train_dataset(products, config, 4, seed=5), 3
        )
        other = take(
            pipelines.make_train_dataset(products, config, 4, seed=6), 3
        )
        for a, b in zip(first, again):
            for key in a:
                self.assertAllEqual(a[key], b[key])
        self.assertNotAllEqual(first[0]["image"], other[0]["image"])

    def test_every_product_is_seen_each_epoch(self):
        config = augment.AugmentConfig(image_size=SIZE)
        batches = take(
            pipelines.make_train_dataset(make_products(4), config, 4), 3
        )
        for batch in batches:
            self.assertCountEqual(batch["label"], [0, 2, 4, 6])

    def test_background_photos_are_used(self):
        config = augment.AugmentConfig.geometry_only(SIZE)
        backgrounds = np.full((2, 40, 40, 3), 77, np.uint8)
        batch = take(
            pipelines.make_train_dataset(
                make_products(), config, 2, backgrounds=backgrounds
            ),
            1,
        )[0]
        background_pixels = batch["image"][batch["mask"][..., 0] == 0]
        self.assertTrue(np.all(background_pixels == 77))

    def test_sprite_size_must_match_image_size(self):
        config = augment.AugmentConfig(image_size=48)
        with self.assertRaisesRegex(ValueError, "sprite_size=48"):
            pipelines.make_train_dataset(make_products(), config, 2)


class EndlessShuffleTest(tf.test.TestCase):

    def stream(self, seed=0, start_index=0, count=5):
        rows = {"value": np.arange(count) * 10}
        shuffled = pipelines.endless_shuffle(rows, seed, start_index)
        return shuffled.as_numpy_iterator()

    def head(self, iterator, length):
        return [int(next(iterator)["value"]) // 10 for _ in range(length)]

    def test_each_epoch_is_a_permutation_and_epochs_differ(self):
        epochs = np.reshape(self.head(self.stream(), 20), (4, 5))
        for epoch in epochs:
            self.assertCountEqual(epoch, range(5))
        self.assertGreater(len({tuple(epoch) for epoch in epochs}), 1)

    def test_a_second_iterator_reads_the_same_stream(self):
        first = self.stream()
        consumed = self.head(first, 12)  # a stateful shuffle would move on
        self.assertEqual(self.head(self.stream(), 12), consumed)

    def test_a_start_index_continues_the_stream(self):
        whole = self.head(self.stream(), 17)
        self.assertEqual(self.head(self.stream(start_index=7), 10), whole[7:])

    def test_seeds_give_other_streams(self):
        self.assertNotEqual(
            self.head(self.stream(seed=0), 15),
            self.head(self.stream(seed=1), 15),
        )


class PhotoDatasetTest(tf.test.TestCase):

    def test_each_crop_comes_with_its_photos_target_and_resumes(self):
        # Photo i is filled with grey level 20 * i and its target is
        # one-hot at i: a crop's colour names the target it must carry.
        count = 5
        photos = np.stack(
            [np.full((40, 48, 3), 20 * i, np.uint8) for i in range(count)]
        )
        targets = np.eye(count, dtype=np.float32)
        dataset = pipelines.make_photo_dataset(
            photos, targets, image_size=16, batch_size=3, seed=4
        )
        batches = list(dataset.take(4).as_numpy_iterator())
        seen = set()
        for batch in batches:
            self.assertEqual(batch["photo"].shape, (3, 16, 16, 3))
            self.assertEqual(batch["photo"].dtype, np.uint8)
            for photo, target in zip(batch["photo"], batch["target"]):
                self.assertAllEqual(
                    photo, np.full_like(photo, 20 * target.argmax())
                )
                seen.add(int(target.argmax()))
        self.assertEqual(seen, set(range(count)))  # 12 draws, 2+ epochs
        # A run resumed at position 6 reads what an uninterrupted one does.
        resumed = pipelines.make_photo_dataset(
            photos, targets, 16, 3, seed=4, start_index=6
        )
        for later, expected in zip(
            resumed.take(2).as_numpy_iterator(), batches[2:]
        ):
            self.assertAllEqual(later["photo"], expected["photo"])
            self.assertAllEqual(later["target"], expected["target"])

    def test_photometric_changes_the_colours_not_the_crops(self):
        # A photo of two grey halves: the crop decides the share of each
        # half in view, colour and camera changes move every grey level.
        photos = np.zeros((4, 40, 48, 3), np.uint8)
        photos[:, :, :24] = 60
        photos[:, :, 24:] = 180
        targets = np.eye(4, dtype=np.float32)
        make = functools.partial(
            pipelines.make_photo_dataset,
            photos,
            targets,
            image_size=16,
            batch_size=4,
            seed=1,
        )
        plain = next(make().as_numpy_iterator())
        jitter = augment.AugmentConfig(image_size=16)
        changed = next(make(photometric=jitter).as_numpy_iterator())
        again = next(make(photometric=jitter).as_numpy_iterator())
        # Static shapes survive the changes (the model is built from them).
        self.assertEqual(
            make(photometric=jitter).element_spec["photo"].shape,
            (4, 16, 16, 3),
        )
        self.assertEqual(changed["photo"].shape, (4, 16, 16, 3))
        self.assertAllEqual(changed["target"], plain["target"])
        self.assertAllEqual(changed["photo"], again["photo"])  # seeded
        self.assertGreater(
            np.abs(
                changed["photo"].astype(int) - plain["photo"].astype(int)
            ).mean(),
            2.0,
        )
        # Geometry only: every photometric range switched off leaves the
        # crops exactly as they were.
        still = next(
            make(
                photometric=augment.AugmentConfig.geometry_only(16)
            ).as_numpy_iterator()
        )
        self.assertAllEqual(still["photo"], plain["photo"])

    def test_per_view_each_crop_carries_its_views_target(self):
        # Grey 200 in the central 70 % of each photo, 20 * i around it: a
        # view at zoom 0.5 sees only the centre, one at zoom 1.0 the rim.
        count, side = 3, 40
        photos = np.stack(
            [np.full((side, side, 3), 20 * i, np.uint8) for i in range(count)]
        )
        photos[:, 6:34, 6:34] = 200
        targets = np.zeros((count, 2, 2 * count), np.float32)
        for i in range(count):
            targets[i, 0, 2 * i] = 1.0  # zoom 1.0
            targets[i, 1, 2 * i + 1] = 1.0  # zoom 0.5
        dataset = pipelines.make_photo_dataset(
            photos, targets, 16, 4, seed=2, zooms=(1.0, 0.5)
        )
        self.assertEqual(dataset.element_spec["target"].shape, (4, 6))
        seen = set()
        for batch in dataset.take(6).as_numpy_iterator():
            for photo, target in zip(batch["photo"], batch["target"]):
                label = int(target.argmax())
                seen.add(label)
                if label % 2:  # the zoomed view: centre only
                    self.assertTrue(np.all(np.abs(photo - 200.0) <= 1))
                else:  # the whole photo: its rim is in view
                    self.assertTrue(
                        np.any(np.abs(photo - 20.0 * (label // 2)) <= 1)
                    )
        self.assertEqual(seen, set(range(2 * count)))

    def test_targets_per_view_need_their_zooms(self):
        photos = np.zeros((2, 8, 8, 3), np.uint8)
        with self.assertRaisesRegex(ValueError, "take Z zooms"):
            pipelines.make_photo_dataset(photos, np.ones((2, 3, 4)), 8, 1)
        with self.assertRaisesRegex(ValueError, "take no zooms"):
            pipelines.make_photo_dataset(
                photos, np.ones((2, 4)), 8, 1, zooms=(1.0,)
            )
        with self.assertRaisesRegex(ValueError, "take Z zooms"):
            pipelines.make_photo_dataset(
                photos, np.ones((2, 3, 4)), 8, 1, zooms=(1.0, 0.5)
            )

    def test_mismatched_counts_are_refused(self):
        with self.assertRaisesRegex(ValueError, "3 photos and 2 targets"):
            pipelines.make_photo_dataset(
                np.zeros((3, 8, 8, 3), np.uint8), np.eye(2), 8, 1
            )
