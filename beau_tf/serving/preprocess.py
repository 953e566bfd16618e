"""The one preprocessing of evaluation, export and serving: bytes to pixels.

The exported SavedModel decodes the bytes a client sends with `decode_batch`,
and offline embedding (index, evaluate, the export's PCA and adaptation
inputs) sends the model the same bytes (`beau_tf.serving.embedding`), so a
served embedding equals the evaluated one by construction.
`decode_batch_zoomed` gives the central crops of the `query_multiscale`
signature (`beau_tf.serving.contract`), each fitted the same way;
`decode_batch_for_mask_views` adds each photo at a higher resolution, from
which `mask_boxes` and `crop_views` cut the views around the product the mask
decoder found.

Geometry: the image is scaled, aspect ratio kept, so that its longer side is
S pixels (bilinear with antialiasing, so that downscaling a large photo does
not alias), then centred on an S x S canvas of neutral grey (`PAD_VALUE`).
Products are often tall or wide (bottles, shoes), and stretching them to a
square would change their shape between catalogue and query photos of other
aspect ratios; training also shows products with their aspect ratio kept.

Decoding is TensorFlow's (`tf.io.decode_image`: JPEG, PNG, GIF, BMP and WebP;
the first frame of an animation). Unlike `beau_tf.data.decode.load_image` it
does not apply EXIF orientation, nor refuse a JPEG cut short but closed with
an end marker (libjpeg fills it with grey, and only warns): clients should
send checked, upright pixels (`beau_tf.data.decode.read_for_model` sends any
accepted file that way, and refuses such a JPEG).

The batch functions never fail on one image: each image comes with a status,
`contract.STATUS_OK` or the reason it cannot be used, worded as
`beau_tf.data.decode` words it, to read after "the image is" (e.g. "empty (0
bytes)", "3×2 pixels; at least 8 px per side expected"); an unusable image
gets neutral grey pixels, which the signatures replace by a zero embedding.
"""

import tensorflow as tf

from beau_tf.data import decode
from beau_tf.serving import contract

# Grey of the padding that squares an image; mid-range, so it looks like
# neither a dark nor a bright background to the model.
PAD_VALUE = 128.0
SUPPORTED_FORMATS = "JPEG, PNG, GIF, BMP or WebP"
# Leading bytes of the formats TensorFlow decodes, to tell a damaged image
# from something that is no image at all (as `beau_tf.data.decode` does).
_SIGNATURES = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (8, b"WEBP", "WebP"),  # after "RIFF" and the file size
)


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
    return fit_to_square(decode_pixels(image_bytes), image_size)


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
    return _fit_zooms(decode_pixels(image_bytes), image_size, zooms)


def _fit_zooms(
    image: tf.Tensor, image_size: int, zooms: tuple[float, ...]
) -> tf.Tensor:
    """(H, W, 3) pixels -> (Z, S, S, 3) fitted central crops, one per zoom."""
    views = []
    for zoom in zooms:
        views.append(fit_to_square(central_crop(image, zoom), image_size))
    return tf.stack(views)  # (Z, S, S, 3)


def central_crop(image: tf.Tensor, zoom: float) -> tf.Tensor:
    """The central `zoom` x `zoom` fraction of (H, W, 3) pixels (of its
    height by of its width), unresized: the view at that zoom before it is
    fitted to the model's square."""
    height = tf.shape(image)[0]
    width = tf.shape(image)[1]
    crop_height = _crop_side(height, zoom)
    crop_width = _crop_side(width, zoom)
    return tf.image.crop_to_bounding_box(
        image,
        (height - crop_height) // 2,
        (width - crop_width) // 2,
        crop_height,
        crop_width,
    )  # (h, w, 3)


def _crop_side(side: tf.Tensor, zoom: float) -> tf.Tensor:
    cropped = tf.cast(tf.round(tf.cast(side, tf.float64) * zoom), tf.int32)
    return tf.clip_by_value(cropped, 1, side)


def decode_pixels(image_bytes: tf.Tensor) -> tf.Tensor:
    """() tf.string -> (H, W, 3) uint8, as every signature decodes."""
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


def decode_batch(
    image_bytes: tf.Tensor, image_size: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """`decode_and_resize` over a batch, with a status per image.

    Args:
      image_bytes: (B,) tf.string encoded images (formats may differ).
      image_size: S, the side of the output.

    Returns:
      `(pixels, status)`: (B, S, S, 3) float32 pixels in [0, 255], and (B,)
      tf.string `contract.STATUS_OK` or why the image cannot be used (its
      pixels are then `PAD_VALUE` grey). A bad image never fails the batch.
    """
    blank = tf.fill((image_size, image_size, 3), PAD_VALUE)
    return tf.map_fn(
        lambda one: _decode_checked(
            one, lambda image: fit_to_square(image, image_size), blank
        ),
        image_bytes,
        fn_output_signature=(
            tf.TensorSpec((image_size, image_size, 3), tf.float32),
            tf.TensorSpec((), tf.string),
        ),
    )  # (B,) -> (B, S, S, 3), (B,)


def decode_batch_zoomed(
    image_bytes: tf.Tensor, image_size: int, zooms: tuple[float, ...]
) -> tuple[tf.Tensor, tf.Tensor]:
    """`decode_zoomed` over a batch, with a status per image.

    Returns:
      `(views, status)`: (B, Z, S, S, 3) float32 and (B,) tf.string, as
      `decode_batch` gives them.
    """
    zooms = contract.check_zooms(zooms)
    blank = tf.fill((len(zooms), image_size, image_size, 3), PAD_VALUE)
    return tf.map_fn(
        lambda one: _decode_checked(
            one, lambda image: _fit_zooms(image, image_size, zooms), blank
        ),
        image_bytes,
        fn_output_signature=(
            tf.TensorSpec((len(zooms), image_size, image_size, 3), tf.float32),
            tf.TensorSpec((), tf.string),
        ),
    )  # (B,) -> (B, Z, S, S, 3), (B,)


def decode_batch_for_mask_views(
    image_bytes: tf.Tensor,
    image_size: int,
    zooms: tuple[float, ...],
    source_size: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`decode_batch_zoomed`, plus each photo fitted into a larger square to
    crop the mask-guided views from (one decode per photo).

    Args:
      image_bytes: (B,) tf.string encoded images.
      image_size: S, the side of each view.
      zooms: Z central-crop fractions.
      source_size: C, the side of the square the views are cropped from
        (larger than S, so that a crop of part of the photo keeps detail).

    Returns:
      `(views, sources, status)`: (B, Z, S, S, 3) and (B, C, C, 3) float32
      pixels in [0, 255], and (B,) tf.string as `decode_batch` gives it.
    """
    zooms = contract.check_zooms(zooms)
    blank = (
        tf.fill((len(zooms), image_size, image_size, 3), PAD_VALUE),
        tf.fill((source_size, source_size, 3), PAD_VALUE),
    )

    def fit(image):
        return (
            _fit_zooms(image, image_size, zooms),
            fit_to_square(image, source_size),
        )

    (views, sources), status = tf.map_fn(
        lambda one: _decode_checked(one, fit, blank),
        image_bytes,
        fn_output_signature=(
            (
                tf.TensorSpec(
                    (len(zooms), image_size, image_size, 3), tf.float32
                ),
                tf.TensorSpec((source_size, source_size, 3), tf.float32),
            ),
            tf.TensorSpec((), tf.string),
        ),
    )  # (B,) -> ((B, Z, S, S, 3), (B, C, C, 3)), (B,)
    return views, sources, status


def mask_boxes(masks: tf.Tensor, pads: tuple[float, ...]) -> tf.Tensor:
    """Square boxes around the product each predicted mask marks.

    The box is the bounding box of the mask's pixels of at least
    `contract.MASK_VIEW_THRESHOLD` of its peak, made square around its
    centre, widened by each padding (a fraction of its side) and at least
    `contract.MASK_VIEW_MIN_SIDE` of the square; a mask whose peak is below
    `contract.MASK_VIEW_MIN_PEAK` gives the whole square.

    Args:
      masks: (B, M, M, 1) or (B, M, M) float32 in [0, 1], each covering the
        square its photo was fitted into.
      pads: P paddings.

    Returns:
      (B, P, 4) float32 `(y0, x0, y1, x1)` as fractions of the square; a box
      may reach past its sides (the crop is then padded grey, as fitting is).
    """
    if masks.shape.rank == 4:
        masks = masks[..., 0]  # (B, M, M, 1) -> (B, M, M)
    side = tf.cast(tf.shape(masks)[1], tf.float32)
    peak = tf.reduce_max(masks, axis=[1, 2])  # (B,)
    selected = masks >= contract.MASK_VIEW_THRESHOLD * peak[:, None, None]
    rows = tf.reduce_any(selected, axis=2)  # (B, M)
    columns = tf.reduce_any(selected, axis=1)  # (B, M)

    def extent(hits):  # (B, M) bool -> first, one past the last; (B,) each
        first = tf.cast(tf.argmax(tf.cast(hits, tf.int32), axis=1), tf.float32)
        last = side - tf.cast(
            tf.argmax(tf.cast(hits[:, ::-1], tf.int32), axis=1), tf.float32
        )
        return first / side, last / side

    top, bottom = extent(rows)
    left, right = extent(columns)
    centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
    box_side = tf.maximum(bottom - top, right - left)  # (B,)
    found = peak >= contract.MASK_VIEW_MIN_PEAK
    boxes = []
    for pad in pads:
        half = (
            tf.clip_by_value(
                box_side * (1.0 + pad), contract.MASK_VIEW_MIN_SIDE, 1.0
            )
            / 2
        )  # (B,)
        box = tf.stack(
            [
                centre_y - half,
                centre_x - half,
                centre_y + half,
                centre_x + half,
            ],
            axis=-1,
        )  # (B, 4)
        whole = tf.constant([0.0, 0.0, 1.0, 1.0])
        boxes.append(tf.where(found[:, None], box, whole))
    if not boxes:
        return tf.zeros([tf.shape(masks)[0], 0, 4], tf.float32)
    return tf.stack(boxes, axis=1)  # (B, P, 4)


def crop_views(
    sources: tf.Tensor, boxes: tf.Tensor, image_size: int
) -> tf.Tensor:
    """Cuts each photo's boxes out of its source square, at S x S.

    Args:
      sources: (B, C, C, 3) float32, from `decode_batch_for_mask_views`.
      boxes: (B, P, 4) square `(y0, x0, y1, x1)` fractions of the square
        (`mask_boxes`); what lies outside it is `PAD_VALUE` grey.
      image_size: S.

    Returns:
      (B, P, S, S, 3) float32 pixels in [0, 255].
    """
    batch, count = tf.shape(boxes)[0], tf.shape(boxes)[1]
    crops = tf.image.crop_and_resize(
        sources,
        tf.reshape(boxes, [-1, 4]),  # (B * P, 4)
        tf.repeat(tf.range(batch), count),  # the photo of each box
        [image_size, image_size],
        extrapolation_value=PAD_VALUE,
    )  # (B * P, S, S, 3)
    return tf.reshape(crops, [batch, count, image_size, image_size, 3])


def _decode_checked(image_bytes: tf.Tensor, fit, blank):
    """`(fit(decoded image), status)` of one image; `(blank, reason)` when it
    cannot be used. `fit` may return a tuple of tensors; `blank` is then the
    tuple of their stand-ins.

    A decoding error inside a graph cannot be caught, so the image is decoded
    in a one-element dataset whose errors are ignored, with `blank` queued
    behind it: the first element is the decoded one when there is one.
    """
    decoded = (
        tf.data.Dataset.from_tensors(image_bytes)
        .map(lambda data: _fit_with_size(data, fit))
        .ignore_errors()
    )
    failed = tf.data.Dataset.from_tensors((blank, tf.constant([0, 0])))
    pixels, size = decoded.concatenate(failed).take(1).get_single_element()
    height, width = size[0], size[1]
    status = tf.where(
        tf.minimum(height, width) >= decode.MIN_SIDE,
        tf.constant(contract.STATUS_OK),
        tf.strings.join(
            [
                tf.strings.as_string(width),
                "×",
                tf.strings.as_string(height),
                f" pixels; at least {decode.MIN_SIDE} px per side expected",
            ]
        ),
    )
    # (0, 0) only comes from the stand-in: the bytes did not decode.
    status = tf.where(height > 0, status, _undecodable_reason(image_bytes))
    usable = status == contract.STATUS_OK
    pixels = tf.nest.map_structure(
        lambda fitted, stand_in: tf.where(usable, fitted, stand_in),
        pixels,
        blank,
    )
    return pixels, status


def _fit_with_size(image_bytes: tf.Tensor, fit):
    image = decode_pixels(image_bytes)  # (H, W, 3)
    return fit(image), tf.shape(image)[:2]


def _undecodable_reason(image_bytes: tf.Tensor) -> tf.Tensor:
    """Why bytes that did not decode are no image, in `decode`'s words."""
    # Padded, so that reading a signature past the end of short bytes is safe.
    head = tf.strings.join([tf.strings.substr(image_bytes, 0, 16), b"\0" * 16])
    reason = tf.constant(
        f"not a decodable image ({SUPPORTED_FORMATS} expected)"
    )
    for offset, signature, name in _SIGNATURES:
        reason = tf.where(
            tf.strings.substr(head, offset, len(signature)) == signature,
            f"a {name} file that cannot be decoded (probably truncated or "
            "corrupt)",
            reason,
        )
    return tf.where(
        tf.strings.length(image_bytes) > 0, reason, "empty (0 bytes)"
    )
