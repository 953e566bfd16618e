"""Foreground augmentation: paste a catalogue product onto a background.

The paper's self-supervision: a clean catalogue image gives its own foreground
mask, so pasting the product onto a background with geometric and photometric
changes yields an (augmented image, mask) pair with no human label.

Every op here is a pure function of its inputs and an explicit stateless seed
(a `(2,)` int tensor), so it runs the same eagerly and inside `tf.data.map`, and
a seeded pipeline repeats exactly even with parallel calls. Geometry is sampled
once as one 3x3 homography and applied to the product's colour and mask
together (one resampling, not a chain of blurring resamplings); photometric ops
touch only the image.

Images inside this module are float32 in [0, 1], `(H, W, 3)`; masks are float32
in {0, 1}, `(H, W, 1)`. Products arrive as fixed-size RGBA sprites `(S, S, 4)`
uint8 (see `beau_tf.data.products`) with `S` equal to the output size.
"""

import dataclasses
import math

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; defaults suit 224 px training.

    Attributes:
      image_size: output side in pixels (images are square).
      scale_range: the product's longest side as a fraction of the image side.
      max_rotation_degrees: rotation is uniform in +-this.
      max_perspective: strength of the random homography (0 = affine only); the
        far edge of the product shrinks by up to about half this fraction.
      flip_probability: chance of a horizontal mirror.
      max_offcentre: how far the product centre may move, as a fraction of the
        free space around it (1 = may touch the border, a little beyond).
      occlusion_probability: chance that an occluder covers part of the product.
      max_occlusion_fraction: occluder side, up to this fraction of the product's
        bounding-box side.
      brightness_delta: additive brightness change, +-this (in [0, 1] units).
      contrast_range, saturation_range: multiplicative factors.
      max_hue_delta: hue rotation, +-this fraction of the colour circle.
      max_colour_cast: per-channel gain in 1 +- this (white balance, bad light).
      blur_probability, max_blur_sigma: Gaussian blur (camera shake, focus).
      noise_probability, max_noise_std: additive Gaussian sensor noise.
      jpeg_probability, jpeg_quality_range: re-encoding artefacts.
      pile_probability: chance that the scene shows a pile of copies of the
        product (fruit in a crate, cartons on a shelf) instead of one; the
        mask is then every visible copy.
      pile_copies: the number of copies in a pile, (low, high) inclusive.
      pile_scale_range: each copy's longest side as a fraction of the image
        side.
    """

    image_size: int = 224
    scale_range: tuple[float, float] = (0.45, 0.95)
    max_rotation_degrees: float = 25.0
    max_perspective: float = 0.3
    flip_probability: float = 0.5
    max_offcentre: float = 0.9
    occlusion_probability: float = 0.4
    max_occlusion_fraction: float = 0.35
    brightness_delta: float = 0.2
    contrast_range: tuple[float, float] = (0.6, 1.4)
    saturation_range: tuple[float, float] = (0.6, 1.4)
    max_hue_delta: float = 0.04
    max_colour_cast: float = 0.15
    blur_probability: float = 0.3
    max_blur_sigma: float = 1.5
    noise_probability: float = 0.3
    max_noise_std: float = 0.04
    jpeg_probability: float = 0.5
    jpeg_quality_range: tuple[int, int] = (30, 95)
    pile_probability: float = 0.0
    pile_copies: tuple[int, int] = (4, 12)
    pile_scale_range: tuple[float, float] = (0.3, 0.5)

    def __post_init__(self):
        if self.image_size < 8:
            raise ValueError(
                f"image_size={self.image_size}; at least 8 expected."
            )
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(
                f"scale_range={self.scale_range}; 0 < low <= high expected."
            )
        for name in (
            "flip_probability",
            "occlusion_probability",
            "blur_probability",
            "noise_probability",
            "jpeg_probability",
            "pile_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"{name}={value}; a probability in [0, 1] expected."
                )
        c_low, c_high = self.pile_copies
        if not 2 <= c_low <= c_high:
            raise ValueError(
                f"pile_copies={self.pile_copies}; 2 <= low <= high expected."
            )
        p_low, p_high = self.pile_scale_range
        if not 0 < p_low <= p_high:
            raise ValueError(
                f"pile_scale_range={self.pile_scale_range}; 0 < low <= high "
                "expected."
            )
        q_low, q_high = self.jpeg_quality_range
        if not 0 < q_low <= q_high <= 100:
            raise ValueError(
                f"jpeg_quality_range={self.jpeg_quality_range}; "
                "0 < low <= high <= 100 expected."
            )

    @classmethod
    def geometry_only(cls, image_size: int, **overrides) -> "AugmentConfig":
        """A config with every photometric change and occlusion switched off."""
        values = dict(
            image_size=image_size,
            occlusion_probability=0.0,
            brightness_delta=0.0,
            contrast_range=(1.0, 1.0),
            saturation_range=(1.0, 1.0),
            max_hue_delta=0.0,
            max_colour_cast=0.0,
            blur_probability=0.0,
            noise_probability=0.0,
            jpeg_probability=0.0,
        )
        values.update(overrides)
        return cls(**values)


# Folded into an element's seed for the pile decision and its copies.
_PILE_STREAM = 7
# Folded into an unlabelled photo's seed for its colour and camera changes.
_PHOTOMETRIC_STREAM = 8


def element_seed(base_seed: int, index: tf.Tensor) -> tf.Tensor:
    """The stateless seed of element `index` of a run seeded with `base_seed`."""
    return tf.stack(
        [tf.constant(base_seed, tf.int64), tf.cast(index, tf.int64)]
    )


def split_seed(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    """`num` independent `(2,)` seeds derived from one."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=num))


def _uniform(seed, low=0.0, high=1.0, shape=()):
    return tf.random.stateless_uniform(shape, seed, low, high, dtype=tf.float32)


def _coin(seed, probability: float) -> tf.Tensor:
    return _uniform(seed) < probability


def _translation(tx, ty):
    return tf.stack([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def sample_placement(seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Samples where the product lands: a homography from sprite to output.

    The sprite's centre goes to a random point; on the way the product is
    mirrored, scaled, rotated and put in perspective, composed into one matrix.

    Args:
      seed: `(2,)` int stateless seed.
      config: the ranges to sample from.

    Returns:
      `(3, 3)` float32 matrix mapping sprite pixel `(x, y, 1)` to output pixel.
    """
    size = float(config.image_size)
    half = size / 2.0
    # Pixel centres sit on integer coordinates, so the image centre is at
    # (size - 1) / 2 and a mirror about it maps pixel j to pixel size - 1 - j.
    pivot = (size - 1.0) / 2.0
    s_flip, s_scale, s_angle, s_persp, s_x, s_y = split_seed(seed, 6)

    flip = tf.where(_coin(s_flip, config.flip_probability), -1.0, 1.0)
    # The sprite's product already spans its longest side, so the scale factor
    # is the product's longest side as a fraction of the output.
    scale = _uniform(s_scale, *config.scale_range)
    angle = _uniform(s_angle, -1.0, 1.0) * math.radians(
        config.max_rotation_degrees
    )
    # c0, c1 of a homography tilt the product plane; dividing by the size makes
    # max_perspective independent of it.
    tilt = (
        _uniform(s_persp, -1.0, 1.0, shape=(2,)) * config.max_perspective / size
    )
    # Room left around the product; rotation may still push a corner out.
    free = tf.maximum(0.0, half - scale * half)
    centre_x = pivot + _uniform(s_x, -1.0, 1.0) * free * config.max_offcentre
    centre_y = pivot + _uniform(s_y, -1.0, 1.0) * free * config.max_offcentre

    cos, sin = tf.cos(angle), tf.sin(angle)
    linear = tf.stack(
        [
            [scale * cos * flip, -scale * sin, 0.0],
            [scale * sin * flip, scale * cos, 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    perspective = tf.stack(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [tilt[0], tilt[1], 1.0]]
    )
    return (
        _translation(centre_x, centre_y)
        @ perspective
        @ linear
        @ _translation(-pivot, -pivot)
    )


def warp_product(
    sprite: tf.Tensor, placement: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Moves the product's colour and mask with one and the same homography.

    Args:
      sprite: `(S, S, 4)` uint8 RGBA product, alpha 255 on the product.
      placement: `(3, 3)` sprite-to-output homography from `sample_placement`.

    Returns:
      `(colour, mask)`: `(S, S, 3)` float32 in [0, 1] and `(S, S, 1)` float32 in
      {0, 1}, aligned pixel for pixel.
    """
    # ImageProjectiveTransform maps output to input, so pass the inverse.
    inverse = tf.linalg.inv(placement)
    inverse = inverse / inverse[2, 2]
    transform = tf.reshape(inverse, [9])[:8]  # (8,)
    sprite = tf.cast(sprite, tf.float32) / 255.0
    colour = keras.ops.image.affine_transform(
        sprite[..., :3],
        transform,
        interpolation="bilinear",
        fill_mode="constant",
    )
    # Nearest keeps the mask binary; bilinear colour at the product's rim is
    # covered by the same mask, so image and mask agree pixel for pixel.
    alpha = keras.ops.image.affine_transform(
        sprite[..., 3:],
        transform,
        interpolation="nearest",
        fill_mode="constant",
    )
    mask = tf.cast(alpha >= 0.5, tf.float32)
    return colour, mask


def pile(
    sprite: tf.Tensor, seed: tf.Tensor, config: AugmentConfig
) -> tuple[tf.Tensor, tf.Tensor]:
    """Several copies of the product, each placed on its own, later ones in
    front: a crate of fruit, a row of cartons.

    Args:
      sprite: `(S, S, 4)` uint8 RGBA product.
      seed: `(2,)` int stateless seed.
      config: the number of copies and their scale.

    Returns:
      `(colour, mask)` as `warp_product` gives them; the mask is every
      visible copy.
    """
    s_count, s_copies = split_seed(seed, 2)
    low, high = config.pile_copies
    count = tf.random.stateless_uniform(
        (), s_count, low, high + 1, dtype=tf.int32
    )
    copy_config = dataclasses.replace(
        config, scale_range=config.pile_scale_range, max_offcentre=1.0
    )
    size = config.image_size
    colour = tf.zeros([size, size, 3])
    mask = tf.zeros([size, size, 1])
    for index, copy_seed in enumerate(split_seed(s_copies, high)):
        copy_colour, copy_mask = warp_product(
            sprite, sample_placement(copy_seed, copy_config)
        )
        copy_mask *= tf.cast(index < count, tf.float32)  # only `count` copies
        colour = composite(copy_colour, copy_mask, colour)
        mask = tf.maximum(mask, copy_mask)
    return colour, mask


def mask_bounding_box(mask: tf.Tensor) -> tf.Tensor:
    """`(4,)` float32 `[top, left, bottom, right]` of a `(H, W, 1)` mask.

    An empty mask gives the whole image, so callers need no special case.
    """
    height, width = tf.shape(mask)[0], tf.shape(mask)[1]
    rows = tf.where(tf.reduce_any(mask[..., 0] > 0, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(mask[..., 0] > 0, axis=0))[:, 0]
    empty = tf.equal(tf.size(rows), 0)
    box = tf.cond(
        empty,
        lambda: tf.stack([0, 0, height, width]),
        lambda: tf.cast(
            tf.stack([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]), tf.int32
        ),
    )
    return tf.cast(box, tf.float32)


def _grid(size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Pixel-centre coordinates in [0, 1): `(H, W)` ys and xs."""
    coords = (tf.range(size, dtype=tf.float32) + 0.5) / size
    return tf.meshgrid(coords, coords, indexing="ij")


def procedural_background(
    seed: tf.Tensor, size: int, num_shapes: int = 8
) -> tf.Tensor:
    """A random cluttered scene: gradient, texture, grain and shapes.

    Stands in for real background photos when none are given.

    Args:
      seed: `(2,)` int stateless seed.
      size: side in pixels.
      num_shapes: at most this many rectangles and ellipses of clutter.

    Returns:
      `(size, size, 3)` float32 in [0, 1].
    """
    seeds = split_seed(seed, 6 + num_shapes)
    ys, xs = _grid(size)

    # A linear gradient between two colours at a random angle.
    colours = _uniform(seeds[0], shape=(2, 3))
    angle = _uniform(seeds[1], 0.0, 2.0 * math.pi)
    ramp = xs * tf.cos(angle) + ys * tf.sin(angle)
    ramp = (ramp - tf.reduce_min(ramp)) / (
        tf.reduce_max(ramp) - tf.reduce_min(ramp) + 1e-6
    )
    image = (
        colours[0] * (1.0 - ramp[..., None])  # (H, W, 3)
        + colours[1] * ramp[..., None]
    )

    # Low-frequency blotches (cloth, wood, walls) and fine grain.
    cells = tf.random.stateless_uniform([2], seeds[2], 2, 12, dtype=tf.int32)
    blotches = tf.random.stateless_normal(
        tf.concat([cells, [3]], axis=0), seeds[3]
    )
    blotches = tf.image.resize(blotches, [size, size], method="bicubic")
    image += blotches * _uniform(seeds[4], 0.0, 0.25)
    image += tf.random.stateless_normal([size, size, 3], seeds[5]) * 0.03

    for shape_seed in seeds[6:]:
        s_present, s_kind, s_box, s_colour, s_alpha = split_seed(shape_seed, 5)
        box = _uniform(s_box, shape=(4,))
        centre_y, centre_x = box[0], box[1]
        half_h, half_w = 0.05 + 0.3 * box[2], 0.05 + 0.3 * box[3]
        dy, dx = (ys - centre_y) / half_h, (xs - centre_x) / half_w
        rectangle = tf.logical_and(tf.abs(dy) <= 1.0, tf.abs(dx) <= 1.0)
        ellipse = dy * dy + dx * dx <= 1.0
        inside = tf.where(_coin(s_kind, 0.5), rectangle, ellipse)
        inside = tf.logical_and(inside, _coin(s_present, 0.7))
        opacity = _uniform(s_alpha, 0.5, 1.0)
        weight = tf.cast(inside, tf.float32)[..., None] * opacity  # (H, W, 1)
        image = image * (1.0 - weight) + _uniform(s_colour, shape=(3,)) * weight
    return tf.clip_by_value(image, 0.0, 1.0)


def crop_background(
    background: tf.Tensor, seed: tf.Tensor, size: int
) -> tf.Tensor:
    """A random crop of a real background photo, resized to `(size, size)`.

    Args:
      background: `(H, W, 3)` uint8 photo.
      seed: `(2,)` int stateless seed.
      size: output side.

    Returns:
      `(size, size, 3)` float32 in [0, 1].
    """
    s_side, s_y, s_x, s_flip = split_seed(seed, 4)
    side = _uniform(s_side, 0.5, 1.0)  # of the shorter side, as a fraction
    height = tf.cast(tf.shape(background)[0], tf.float32)
    width = tf.cast(tf.shape(background)[1], tf.float32)
    short = tf.minimum(height, width)
    box_h, box_w = side * short / height, side * short / width
    top = _uniform(s_y) * (1.0 - box_h)
    left = _uniform(s_x) * (1.0 - box_w)
    return _crop_and_flip(
        background, [top, left, top + box_h, left + box_w], size, s_flip
    )


def _crop_and_flip(
    image: tf.Tensor, box: list, size: int, flip_seed: tf.Tensor
) -> tf.Tensor:
    """The `[top, left, bottom, right]` box (fractions) of a `(H, W, 3)`
    uint8 image, resized to `(size, size)` float32 in [0, 1] and flipped
    half of the time."""
    crop = tf.image.crop_and_resize(
        tf.cast(image[None], tf.float32) / 255.0,
        tf.stack([box]),  # (1, 4)
        box_indices=[0],
        crop_size=[size, size],
    )[
        0
    ]  # (size, size, 3)
    return tf.where(_coin(flip_seed, 0.5), tf.image.flip_left_right(crop), crop)


def crop_zoom(
    photo: tf.Tensor,
    seed: tf.Tensor,
    zoom: tf.Tensor,
    size: int,
    jitter: float = 0.1,
) -> tf.Tensor:
    """About the central crop at `zoom` of a square photo (the query view
    `query_multiscale` takes at that zoom), resized to `(size, size)`: its
    side moved by up to +-`jitter`, its centre by up to `jitter` / 2 of its
    side, flipped half of the time.

    Args:
      photo: `(H, H, 3)` uint8 square photo.
      seed: `(2,)` int stateless seed.
      zoom: () float32, the crop's side as a fraction of the photo's.
      size: output side.
      jitter: how far the crop may move from the view.

    Returns:
      `(size, size, 3)` float32 in [0, 1].
    """
    s_side, s_y, s_x, s_flip = split_seed(seed, 4)
    zoom = tf.cast(zoom, tf.float32)
    side = tf.minimum(zoom * _uniform(s_side, 1.0 - jitter, 1.0 + jitter), 1.0)
    limit = 1.0 - side
    top = tf.clip_by_value(
        (limit + _uniform(s_y, -jitter, jitter) * side) / 2.0, 0.0, limit
    )
    left = tf.clip_by_value(
        (limit + _uniform(s_x, -jitter, jitter) * side) / 2.0, 0.0, limit
    )
    return _crop_and_flip(
        photo, [top, left, top + side, left + side], size, s_flip
    )


def composite(
    colour: tf.Tensor, mask: tf.Tensor, background: tf.Tensor
) -> tf.Tensor:
    """The product over the background where the mask is on."""
    return colour * mask + background * (1.0 - mask)


def occlude(
    image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, config: AugmentConfig
) -> tuple[tf.Tensor, tf.Tensor]:
    """Covers part of the product with a flat or noisy patch (a hand, a tag).

    The occluded pixels leave the mask: the mask marks the visible product.

    Args:
      image: `(H, W, 3)` float32 in [0, 1].
      mask: `(H, W, 1)` float32 in {0, 1}.
      seed: `(2,)` int stateless seed.
      config: occlusion probability and size.

    Returns:
      `(image, mask)` with the same shapes.
    """
    s_apply, s_size, s_where, s_colour, s_texture, s_kind = split_seed(seed, 6)
    size = config.image_size
    ys, xs = _grid(size)
    top, left, bottom, right = tf.unstack(mask_bounding_box(mask) / size)
    extent = (
        _uniform(s_size, 0.1, 1.0, shape=(2,)) * config.max_occlusion_fraction
    )
    half_h = 0.5 * extent[0] * (bottom - top)
    half_w = 0.5 * extent[1] * (right - left)
    # Centres on the box's outline or inside it, so the patch bites the product.
    where = _uniform(s_where, shape=(2,))
    centre_y = top + where[0] * (bottom - top)
    centre_x = left + where[1] * (right - left)
    dy, dx = (ys - centre_y) / half_h, (xs - centre_x) / half_w
    rectangle = tf.logical_and(tf.abs(dy) <= 1.0, tf.abs(dx) <= 1.0)
    ellipse = dy * dy + dx * dx <= 1.0
    covered = tf.where(_coin(s_kind, 0.5), rectangle, ellipse)
    covered = tf.logical_and(
        covered, _coin(s_apply, config.occlusion_probability)
    )
    covered = tf.cast(covered, tf.float32)[..., None]  # (H, W, 1)
    patch = (
        _uniform(s_colour, shape=(3,))
        + tf.random.stateless_normal([size, size, 3], s_texture) * 0.05
    )
    image = (
        image * (1.0 - covered) + tf.clip_by_value(patch, 0.0, 1.0) * covered
    )
    return image, mask * (1.0 - covered)


def jitter_colour(
    image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig
) -> tf.Tensor:
    """Brightness, contrast, saturation, hue and a colour cast; image only."""
    s_bright, s_contrast, s_sat, s_hue, s_cast = split_seed(seed, 5)
    if config.brightness_delta > 0:
        image = tf.image.stateless_random_brightness(
            image, config.brightness_delta, s_bright
        )
    if config.contrast_range != (1.0, 1.0):
        image = tf.image.stateless_random_contrast(
            image, *config.contrast_range, s_contrast
        )
    if config.saturation_range != (1.0, 1.0):
        image = tf.image.stateless_random_saturation(
            tf.clip_by_value(image, 0.0, 1.0), *config.saturation_range, s_sat
        )
    if config.max_hue_delta > 0:
        image = tf.image.stateless_random_hue(
            tf.clip_by_value(image, 0.0, 1.0), config.max_hue_delta, s_hue
        )
    if config.max_colour_cast > 0:
        gain = _uniform(
            s_cast,
            1.0 - config.max_colour_cast,
            1.0 + config.max_colour_cast,
            shape=(3,),
        )
        image = image * gain
    return tf.clip_by_value(image, 0.0, 1.0)


def gaussian_blur(
    image: tf.Tensor, sigma: tf.Tensor, radius: int = 3
) -> tf.Tensor:
    """Separable Gaussian blur of a `(H, W, C)` image; sigma 0 is the identity."""
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    channels = image.shape[-1]
    row = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    column = tf.reshape(row, [-1, 1, channels, 1])
    # Reflect padding avoids dark borders from zero padding.
    padded = tf.pad(
        image[None],
        [[0, 0], [radius, radius], [radius, radius], [0, 0]],
        mode="REFLECT",
    )  # (1, H+2r, W+2r, C)
    blurred = tf.nn.depthwise_conv2d(padded, row, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, column, [1, 1, 1, 1], "VALID")
    return blurred[0]  # (H, W, C)


def degrade(
    image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig
) -> tf.Tensor:
    """Camera degradations: blur, sensor noise, JPEG artefacts; image only."""
    s_blur, s_sigma, s_noise, s_std, s_normal, s_jpeg, s_quality = split_seed(
        seed, 7
    )
    if config.blur_probability > 0:
        sigma = _uniform(s_sigma, 0.3, config.max_blur_sigma)
        image = tf.cond(
            _coin(s_blur, config.blur_probability),
            lambda: gaussian_blur(image, sigma),
            lambda: image,
        )
    if config.noise_probability > 0:
        std = tf.where(
            _coin(s_noise, config.noise_probability),
            _uniform(s_std, 0.0, config.max_noise_std),
            0.0,
        )
        image = (
            image + tf.random.stateless_normal(tf.shape(image), s_normal) * std
        )
    image = tf.clip_by_value(image, 0.0, 1.0)
    if config.jpeg_probability > 0:
        image = tf.cond(
            _coin(s_jpeg, config.jpeg_probability),
            lambda: tf.image.stateless_random_jpeg_quality(
                image, *config.jpeg_quality_range, s_quality
            ),
            lambda: image,
        )
    return image


def photometric(
    image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig
) -> tf.Tensor:
    """The scenes' colour and camera changes (`jitter_colour`, `degrade`) on
    a photo that is already a view, float32 in [0, 1]; seeded from its own
    stream of `seed`, so a view's crop stays what it was without them."""
    s_colour, s_degrade = split_seed(
        tf.random.experimental.stateless_fold_in(seed, _PHOTOMETRIC_STREAM), 2
    )
    return degrade(jitter_colour(image, s_colour, config), s_degrade, config)


def augment_product(
    sprite: tf.Tensor,
    seed: tf.Tensor,
    config: AugmentConfig,
    background: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One (augmented photo, mask) pair from one catalogue product.

    Args:
      sprite: `(S, S, 4)` uint8 RGBA product with `S == config.image_size`.
      seed: `(2,)` int stateless seed; the same seed gives the same pair.
      config: the ranges of the random changes.
      background: optional `(H, W, 3)` uint8 photo to paste onto; a procedural
        scene is drawn when None.

    Returns:
      `(image, mask)`: `(S, S, 3)` uint8 and `(S, S, 1)` float32 in {0, 1}.
    """
    s_place, s_background, s_occlude, s_colour, s_degrade = split_seed(seed, 5)
    size = config.image_size
    if config.pile_probability > 0:
        # Folded in, so that the other changes stay those of a pile-free run.
        s_coin, s_pile = split_seed(
            tf.random.experimental.stateless_fold_in(seed, _PILE_STREAM), 2
        )
        colour, mask = tf.cond(
            _coin(s_coin, config.pile_probability),
            lambda: pile(sprite, s_pile, config),
            lambda: warp_product(sprite, sample_placement(s_place, config)),
        )
    else:
        colour, mask = warp_product(sprite, sample_placement(s_place, config))
    if background is None:
        scene = procedural_background(s_background, size)
    else:
        scene = crop_background(background, s_background, size)
    image = composite(colour, mask, scene)
    if config.occlusion_probability > 0:
        image, mask = occlude(image, mask, s_occlude, config)
    image = jitter_colour(image, s_colour, config)
    image = degrade(image, s_degrade, config)
    image = tf.cast(tf.round(image * 255.0), tf.uint8)
    return tf.ensure_shape(image, [size, size, 3]), tf.ensure_shape(
        mask, [size, size, 1]
    )
