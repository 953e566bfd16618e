"""The one preprocessing of evaluation, export and serving: bytes to pixels.

Catalogue and query images are embedded offline through `make_image_dataset`,
and the exported SavedModel decodes the bytes a client sends with
`decode_batch`; both call `decode_and_resize`, so a served embedding equals the
evaluated one by construction. `decode_batch_zoomed` gives the central crops of
the `query_multiscale` signature (`beau_tf.serving.contract`), each fitted the same way.

Geometry: the image is scaled, aspect ratio kept, so that its longer side is
S pixels (bilinear with antialiasing, so that downscaling a large photo does
not alias), then centred on an S x S canvas of neutral grey (`PAD_VALUE`).
Products are often tall or wide (bottles, shoes), and stretching them to a
square would change their shape between catalogue and query photos of other
aspect ratios; training also shows products with their aspect ratio kept.

Decoding is TensorFlow's (`tf.io.decode_image`: JPEG, PNG, GIF, BMP and WebP;
the first frame of an animation). Unlike `beau_tf.data.decode.load_image` it
does not apply EXIF orientation: clients should send upright pixels.
"""

from absl import logging
import tensorflow as tf

from beau_tf.serving import contract

# Grey of the padding that squares an image; mid-range, so it looks like
# neither a dark nor a bright background to the model.
PAD_VALUE = 128.0
SUPPORTED_FORMATS = "JPEG, PNG, GIF, BMP or WebP"


def decode_and_resize(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes one encoded image and fits it, padded, into an S x S square.

    Args:
      image_bytes: () tf.string, an encoded JPEG, PNG, GIF, BMP or WebP image
        (grayscale and RGBA become RGB; an animation gives its first frame).
      image_size: S, the side of the output.

    Returns:
      (S, S, 3) float32 pixels in [0, 255]: the image scaled so that its longer
      side is S, centred, the rest `PAD_VALUE`.

    Raises:
      tf.errors.InvalidArgumentError: when run on bytes that are not a
        decodable image.
    """
    return fit_to_square(_decode(image_bytes), image_size)


def decode_zoomed(
    image_bytes: tf.Tensor, image_size: int, zooms: tuple[float, ...]
) -> tf.Tensor:
    """Decodes one image once and fits several central crops of it.

    The view at zoom z is the central z x z fraction of the image (z of its
    height by z of its width), fitted as `decode_and_resize` fits the whole
    image; zoom 1.0 gives exactly `decode_and_resize`'s pixels.

    Args:
      image_bytes: () tf.string, an encoded image (see `decode_and_resize`).
      image_size: S, the side of each view.
      zooms: Z fractions in (0, 1].

    Returns:
      (Z, S, S, 3) float32 pixels in [0, 255], one view per zoom.

    Raises:
      ValueError: for no zooms or a zoom outside (0, 1].
      tf.errors.InvalidArgumentError: for bytes that are not an image.
    """
    zooms = contract.check_zooms(zooms)
    image = _decode(image_bytes)
    height = tf.shape(image)[0]
    width = tf.shape(image)[1]
    views = []
    for zoom in zooms:
        crop_height = _crop_side(height, zoom)
        crop_width = _crop_side(width, zoom)
        crop = tf.image.crop_to_bounding_box(
            image,
            (height - crop_height) // 2,
            (width - crop_width) // 2,
            crop_height,
            crop_width,
        )  # (h, w, 3) uint8
        views.append(fit_to_square(crop, image_size))
    return tf.stack(views)  # (Z, S, S, 3)


def _crop_side(side: tf.Tensor, zoom: float) -> tf.Tensor:
    cropped = tf.cast(tf.round(tf.cast(side, tf.float64) * zoom), tf.int32)
    return tf.clip_by_value(cropped, 1, side)


def _decode(image_bytes: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(
        image_bytes, channels=3, expand_animations=False
    )  # (H, W, 3) uint8
    return tf.ensure_shape(image, [None, None, 3])


def fit_to_square(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Scales (H, W, 3) pixels so the longer side is S and pads to S x S.

    Returns:
      (S, S, 3) float32 in [0, 255], the rest `PAD_VALUE`.
    """
    height = tf.shape(image)[0]
    width = tf.shape(image)[1]
    scale = image_size / tf.cast(tf.maximum(height, width), tf.float64)
    new_height = _scaled_side(height, scale, image_size)
    new_width = _scaled_side(width, scale, image_size)
    resized = tf.image.resize(
        image, [new_height, new_width], method="bilinear", antialias=True
    )  # (h, w, 3) float32
    top = (image_size - new_height) // 2
    left = (image_size - new_width) // 2
    padded = tf.pad(
        resized,
        [
            [top, image_size - new_height - top],
            [left, image_size - new_width - left],
            [0, 0],
        ],
        constant_values=PAD_VALUE,
    )  # (S, S, 3)
    padded = tf.clip_by_value(padded, 0.0, 255.0)
    return tf.ensure_shape(padded, [image_size, image_size, 3])


def _scaled_side(side: tf.Tensor, scale: tf.Tensor, image_size: int):
    scaled = tf.cast(tf.round(tf.cast(side, tf.float64) * scale), tf.int32)
    return tf.clip_by_value(scaled, 1, image_size)


def decode_batch(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """`decode_and_resize` over a batch of encoded images.

    Args:
      image_bytes: (B,) tf.string encoded images (formats may differ).
      image_size: S, the side of the output.

    Returns:
      (B, S, S, 3) float32 pixels in [0, 255].
    """
    return tf.map_fn(
        lambda one: decode_and_resize(one, image_size),
        image_bytes,
        fn_output_signature=tf.TensorSpec(
            (image_size, image_size, 3), tf.float32
        ),
    )  # (B,) -> (B, S, S, 3)


def decode_batch_zoomed(
    image_bytes: tf.Tensor, image_size: int, zooms: tuple[float, ...]
) -> tf.Tensor:
    """`decode_zoomed` over a batch: (B,) bytes -> (B, Z, S, S, 3) float32."""
    zooms = contract.check_zooms(zooms)
    return tf.map_fn(
        lambda one: decode_zoomed(one, image_size, zooms),
        image_bytes,
        fn_output_signature=tf.TensorSpec(
            (len(zooms), image_size, image_size, 3), tf.float32
        ),
    )  # (B,) -> (B, Z, S, S, 3)


def _warn_skipped(path: tf.Tensor) -> tf.Tensor:
    logging.warning(
        "Skipping %s: unreadable or not a decodable image (%s expected).",
        path.numpy().decode("utf-8", "replace"),
        SUPPORTED_FORMATS,
    )
    return tf.constant(False)


def make_image_dataset(
    paths: list[str], image_size: int, batch_size: int
) -> tf.data.Dataset:
    """Batches of decoded images for embedding a catalogue or queries.

    The order of `paths` is kept. A file that cannot be read or decoded is
    skipped with a warning that names it; every element carries its "path",
    so the caller knows exactly which files were embedded (ids travel with
    the data). Each file is decoded in its own small dataset whose errors are
    ignored, with a stand-in element flagged as failed behind it, which is
    how a failure can be tied to its file inside a TensorFlow graph.

    Args:
      paths: image files.
      image_size: S, the side of the images (`decode_and_resize`).
      batch_size: images per batch; the last batch may be smaller.

    Returns:
      A dataset of `{"image": (B, S, S, 3) float32 in [0, 255], "path": (B,)
      tf.string}`.

    Raises:
      ValueError: for an empty `paths` or a `batch_size` below 1.
    """
    if not paths:
        raise ValueError("No image paths given: nothing to embed.")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; at least 1 expected.")
    blank = tf.zeros((image_size, image_size, 3), tf.float32)

    def load(path):
        decoded = (
            tf.data.Dataset.from_tensors(path)
            .map(
                lambda p: {
                    "image": decode_and_resize(tf.io.read_file(p), image_size),
                    "path": p,
                    "ok": True,
                }
            )
            .ignore_errors()
        )
        failed = tf.data.Dataset.from_tensors(
            {"image": blank, "path": path, "ok": False}
        )
        return decoded.concatenate(failed).take(1)

    def keep(element):
        return tf.cond(
            element["ok"],
            lambda: tf.constant(True),
            lambda: tf.py_function(_warn_skipped, [element["path"]], tf.bool),
        )

    dataset = tf.data.Dataset.from_tensor_slices(list(paths))
    dataset = dataset.interleave(
        load,
        cycle_length=tf.data.AUTOTUNE,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = dataset.filter(keep)
    dataset = dataset.map(
        lambda element: {"image": element["image"], "path": element["path"]}
    )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
