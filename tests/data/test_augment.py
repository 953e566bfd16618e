"""Tests for beau_tf.data.augment: alignment, determinism, each op in tf.data."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from beau_tf.data import augment

SIZE = 64
# A blue product with a red marker near its top-left corner.
PRODUCT = (slice(8, 56), slice(16, 48))
MARKER = (slice(12, 16), slice(20, 24))
MARKER_CENTRE_XY = (21.5, 13.5)
GREY = 128


def make_sprite() -> np.ndarray:
    sprite = np.zeros((SIZE, SIZE, 4), np.uint8)
    sprite[PRODUCT] = (40, 80, 200, 255)
    sprite[MARKER + (slice(0, 3),)] = (255, 0, 0)
    return sprite


def grey_photo(size: int = SIZE) -> np.ndarray:
    return np.full((size, size, 3), GREY, np.uint8)


def red_pixels(image: np.ndarray) -> np.ndarray:
    """`(N, 2)` (y, x) of clearly red pixels of a [0, 1] or uint8 image."""
    image = np.asarray(image, np.float32)
    if image.max() > 1.0:
        image = image / 255.0
    red = (image[..., 0] > 0.6) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)
    return np.argwhere(red)


def apply_homography(matrix: np.ndarray, x: float, y: float):
    point = matrix @ np.array([x, y, 1.0])
    return point[0] / point[2], point[1] / point[2]


class PlacementTest(tf.test.TestCase, parameterized.TestCase):

    def test_same_seed_same_placement(self):
        config = augment.AugmentConfig(image_size=SIZE)
        seed = augment.element_seed(7, 3)
        self.assertAllEqual(
            augment.sample_placement(seed, config),
            augment.sample_placement(seed, config),
        )
        self.assertNotAllClose(
            augment.sample_placement(seed, config),
            augment.sample_placement(augment.element_seed(7, 4), config),
        )

    def test_flip_mirrors_the_sprite_exactly(self):
        config = augment.AugmentConfig.geometry_only(
            SIZE,
            scale_range=(1.0, 1.0),
            max_rotation_degrees=0.0,
            max_perspective=0.0,
            flip_probability=1.0,
        )
        sprite = make_sprite()
        colour, mask = augment.warp_product(
            sprite, augment.sample_placement(augment.element_seed(0, 0), config)
        )
        self.assertAllClose(
            colour, np.fliplr(sprite[..., :3]) / 255.0, atol=1e-5
        )
        self.assertAllEqual(mask[..., 0], np.fliplr(sprite[..., 3]) > 0)

    def test_scale_shrinks_about_the_centre(self):
        config = augment.AugmentConfig.geometry_only(
            SIZE,
            scale_range=(0.5, 0.5),
            max_rotation_degrees=0.0,
            max_perspective=0.0,
            flip_probability=0.0,
            max_offcentre=0.0,
        )
        colour, mask = augment.warp_product(
            make_sprite(),
            augment.sample_placement(augment.element_seed(0, 0), config),
        )
        # Hand-computed: centre 31.5, marker (21.5, 13.5) -> 31.5 + 0.5 * offset.
        centre = red_pixels(colour).mean(axis=0)
        self.assertAllClose(centre, [22.5, 26.5], atol=0.6)
        # The 48x32 product becomes 24x16 around the centre.
        self.assertNear(float(np.sum(mask)), 24 * 16, 24 + 16)

    @parameterized.parameters(0, 1, 2, 3, 4, 5)
    def test_marker_lands_where_the_homography_says(self, index):
        config = augment.AugmentConfig.geometry_only(
            SIZE, scale_range=(0.8, 1.0)
        )
        placement = augment.sample_placement(
            augment.element_seed(1, index), config
        )
        colour, mask = augment.warp_product(make_sprite(), placement)
        red = red_pixels(colour)
        self.assertNotEmpty(red)
        expected_x, expected_y = apply_homography(
            placement.numpy(), *MARKER_CENTRE_XY
        )
        self.assertAllClose(
            red.mean(axis=0), [expected_y, expected_x], atol=1.0
        )
        # Every marker pixel is product in the mask too.
        self.assertTrue(np.all(mask.numpy()[red[:, 0], red[:, 1], 0] == 1.0))


class AugmentProductTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(0, 1, 2, 3)
    def test_mask_follows_geometry_in_the_final_pair(self, index):
        config = augment.AugmentConfig.geometry_only(
            SIZE, scale_range=(0.8, 1.0)
        )
        seed = augment.element_seed(2, index)
        image, mask = augment.augment_product(
            make_sprite(), seed, config, background=grey_photo()
        )
        placement = augment.sample_placement(
            augment.split_seed(seed, 5)[0], config
        )
        expected_x, expected_y = apply_homography(
            placement.numpy(), *MARKER_CENTRE_XY
        )
        red = red_pixels(image)
        self.assertAllClose(
            red.mean(axis=0), [expected_y, expected_x], atol=1.0
        )
        image, mask = image.numpy(), mask.numpy()[..., 0]
        # Outside the mask is the grey background; inside is the product.
        self.assertTrue(np.all(image[mask == 0] == GREY))
        self.assertFalse(np.any(np.all(image[mask == 1] == GREY, axis=-1)))

    def test_photometric_changes_leave_the_mask_alone(self):
        full = augment.AugmentConfig(image_size=SIZE, occlusion_probability=0.0)
        geometric = augment.AugmentConfig.geometry_only(SIZE)
        seed = augment.element_seed(3, 9)
        image_a, mask_a = augment.augment_product(make_sprite(), seed, full)
        image_b, mask_b = augment.augment_product(
            make_sprite(), seed, geometric
        )
        self.assertAllEqual(mask_a, mask_b)
        self.assertNotAllEqual(image_a, image_b)

    def test_same_seed_same_pair_other_seed_other_pair(self):
        config = augment.AugmentConfig(image_size=SIZE)
        pair = augment.augment_product(
            make_sprite(), augment.element_seed(4, 1), config
        )
        again = augment.augment_product(
            make_sprite(), augment.element_seed(4, 1), config
        )
        other = augment.augment_product(
            make_sprite(), augment.element_seed(4, 2), config
        )
        self.assertAllEqual(pair[0], again[0])
        self.assertAllEqual(pair[1], again[1])
        self.assertNotAllEqual(pair[0], other[0])

    def test_output_types(self):
        image, mask = augment.augment_product(
            make_sprite(),
            augment.element_seed(0, 0),
            augment.AugmentConfig(image_size=SIZE),
            background=grey_photo(80),
        )
        self.assertEqual(image.dtype, tf.uint8)
        self.assertEqual(image.shape, (SIZE, SIZE, 3))
        self.assertEqual(mask.dtype, tf.float32)
        self.assertEqual(mask.shape, (SIZE, SIZE, 1))
        self.assertAllInSet(mask, [0.0, 1.0])


class PileTest(tf.test.TestCase):

    def test_each_copy_lands_where_its_placement_says_and_is_masked(self):
        config = augment.AugmentConfig.geometry_only(
            SIZE, pile_copies=(2, 2), pile_scale_range=(0.4, 0.4)
        )
        seed = augment.element_seed(5, 3)
        colour, mask = augment.pile(make_sprite(), seed, config)
        _, s_copies = augment.split_seed(seed, 2)
        copy_config = augment.dataclasses.replace(
            config, scale_range=(0.4, 0.4), max_offcentre=1.0
        )
        union = np.zeros((SIZE, SIZE, 1), np.float32)
        for copy_seed in augment.split_seed(s_copies, 2):
            _, copy_mask = augment.warp_product(
                make_sprite(), augment.sample_placement(copy_seed, copy_config)
            )
            union = np.maximum(union, copy_mask)
        self.assertAllEqual(mask, union)
        # Two copies of one product: more product than one copy alone, and
        # nothing drawn outside the mask.
        self.assertGreater(mask.numpy().sum(), copy_mask.numpy().sum())
        outside = colour.numpy()[mask.numpy()[..., 0] == 0]
        self.assertAllEqual(outside, np.zeros_like(outside))

    def test_a_pile_scene_is_seeded_and_leaves_pile_free_runs_alone(self):
        piles = augment.AugmentConfig(image_size=SIZE, pile_probability=1.0)
        single = augment.AugmentConfig(image_size=SIZE)
        seed = augment.element_seed(6, 2)
        pair = augment.augment_product(make_sprite(), seed, piles)
        again = augment.augment_product(make_sprite(), seed, piles)
        self.assertAllEqual(pair[0], again[0])
        self.assertAllEqual(pair[1], again[1])
        alone = augment.augment_product(make_sprite(), seed, single)
        never = augment.augment_product(
            make_sprite(),
            seed,
            augment.AugmentConfig(image_size=SIZE, pile_probability=0.0),
        )
        self.assertAllEqual(alone[1], never[1])
        self.assertNotAllEqual(pair[1], alone[1])


class OcclusionTest(tf.test.TestCase):

    def test_occluder_removes_covered_product_from_mask(self):
        config = augment.AugmentConfig(
            image_size=SIZE,
            occlusion_probability=1.0,
            max_occlusion_fraction=0.8,
        )
        image = tf.fill([SIZE, SIZE, 3], 0.5)
        mask = np.zeros((SIZE, SIZE, 1), np.float32)
        mask[PRODUCT] = 1.0
        for index in range(4):
            occluded, new_mask = augment.occlude(
                image, tf.constant(mask), augment.element_seed(5, index), config
            )
            lost = (mask[..., 0] == 1) & (new_mask.numpy()[..., 0] == 0)
            self.assertTrue(lost.any())
            # The mask only loses pixels, and only where the image was painted.
            self.assertAllLessEqual(new_mask - mask, 0.0)
            changed = np.any(np.abs(occluded.numpy() - 0.5) > 1e-6, axis=-1)
            self.assertTrue(np.all(changed[lost]))

    def test_probability_zero_changes_nothing(self):
        config = augment.AugmentConfig(
            image_size=SIZE, occlusion_probability=0.0
        )
        image = tf.random.uniform([SIZE, SIZE, 3])
        mask = tf.ones([SIZE, SIZE, 1])
        occluded, new_mask = augment.occlude(
            image, mask, augment.element_seed(0, 0), config
        )
        self.assertAllEqual(occluded, image)
        self.assertAllEqual(new_mask, mask)


class BlurTest(tf.test.TestCase):

    def test_blur_keeps_mean_and_spreads_a_point(self):
        image = np.zeros((15, 15, 1), np.float32)
        image[7, 7] = 1.0
        blurred = augment.gaussian_blur(tf.constant(image), 1.0).numpy()
        self.assertNear(blurred.sum(), 1.0, 1e-4)
        self.assertLess(blurred[7, 7, 0], 0.25)
        self.assertAllClose(blurred[6, 7], blurred[8, 7])  # symmetric


# Each op, eagerly and inside tf.data.map, gives the same result.
_CONFIG = augment.AugmentConfig(
    image_size=SIZE,
    occlusion_probability=1.0,
    blur_probability=1.0,
    noise_probability=1.0,
    jpeg_probability=1.0,
)
_IMAGE = (
    np.random.default_rng(0).uniform(size=(SIZE, SIZE, 3)).astype(np.float32)
)
_MASK = (np.random.default_rng(1).uniform(size=(SIZE, SIZE, 1)) > 0.5).astype(
    np.float32
)
_OPS = {
    "placement": lambda s: augment.sample_placement(s, _CONFIG),
    "warp": lambda s: augment.warp_product(
        make_sprite(), augment.sample_placement(s, _CONFIG)
    ),
    "procedural_background": lambda s: augment.procedural_background(s, SIZE),
    "crop_background": lambda s: augment.crop_background(
        np.uint8(_IMAGE[:48] * 255), s, SIZE
    ),
    "occlude": lambda s: augment.occlude(_IMAGE, _MASK, s, _CONFIG),
    "jitter_colour": lambda s: augment.jitter_colour(_IMAGE, s, _CONFIG),
    "degrade": lambda s: augment.degrade(_IMAGE, s, _CONFIG),
    "augment_product": lambda s: augment.augment_product(
        make_sprite(), s, _CONFIG
    ),
    "pile": lambda s: augment.pile(make_sprite(), s, _CONFIG),
    "augment_product_with_piles": lambda s: augment.augment_product(
        make_sprite(),
        s,
        augment.dataclasses.replace(_CONFIG, pile_probability=0.5),
    ),
}


class OpsInTfDataTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(*[(name, name) for name in _OPS])
    def test_eager_equals_dataset_map(self, name):
        op = _OPS[name]
        seed = augment.element_seed(11, 5)
        eager = op(seed)
        dataset = tf.data.Dataset.from_tensors(seed).map(op)
        mapped = next(iter(dataset))
        tf.nest.map_structure(self.assertAllClose, eager, mapped)


class ConfigTest(parameterized.TestCase):

    @parameterized.parameters(
        dict(image_size=4),
        dict(scale_range=(0.9, 0.5)),
        dict(flip_probability=1.5),
        dict(jpeg_quality_range=(50, 101)),
        dict(pile_probability=-0.1),
        dict(pile_copies=(1, 4)),
        dict(pile_scale_range=(0.0, 0.3)),
    )
    def test_bad_values_are_refused_by_name(self, **bad):
        name = next(iter(bad))
        with self.assertRaisesRegex(ValueError, name):
            augment.AugmentConfig(**bad)
