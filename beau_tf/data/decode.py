"""Robust image decoding: any catalogue or query file to 8-bit RGB (+ alpha).

Everything downstream (mask extraction, augmentation, the tf.data pipelines,
export tests) sees one representation, `DecodedImage`: an (H, W, 3) uint8 RGB
array in display orientation, plus an (H, W) uint8 alpha array when the file has
real transparency. This module decodes with PIL and never imports TensorFlow.

What it takes care of, so callers do not have to:

* Bad files (empty, truncated, corrupt, not an image) raise `ImageDecodeError`
  naming the file and what was expected. The full decode happens here, so a
  truncated file fails now rather than later inside a pipeline; colour and
  grey JPEGs are decoded by libjpeg-turbo through simplejpeg, which, unlike
  PIL, tells a JPEG cut short and closed with an end marker (grey below the
  cut) from a whole one.
* Pixel modes: 1-bit, grayscale, palette (with or without transparency),
  CMYK, YCbCr, 16-bit and 32-bit integer, and float images are all brought to
  8-bit RGB. 16-bit data is scaled (PIL's own `convert` would clip it).
* EXIF orientation is applied.
* Very large images: an explicit pixel limit (`MAX_PIXELS`) replaces PIL's
  decompression-bomb default for calls made here, JPEGs are decoded at a reduced
  DCT scale when `max_side` allows, and the result is downscaled so that its
  longest side is at most `max_side`.
* Animated GIF / WebP and multi-page TIFF: the first frame.
* Untrusted bytes (the search service's uploads): `DecodeLimits` bounds what
  one decode may cost before and while it runs: the memory its pixels take,
  estimated from the header after a JPEG's reduced-scale draft; the number
  of scans of a progressive JPEG; and the CPU time spent decoding, checked as
  the data is fed to the decoder.
"""

import contextlib
import dataclasses
import io
import os
import struct
import threading
import time
import warnings
from typing import BinaryIO, Iterator

from absl import logging
import numpy as np
from PIL import ExifTags
from PIL import Image
import simplejpeg

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
)

# Largest image accepted, in pixels (width * height). PIL's default limit
# (~89M pixels, hard error above ~179M) rejects ordinary high-resolution
# product shots; beyond 400M pixels a file is far more likely a mistake or an
# attack than a catalogue image.
MAX_PIXELS = 20000 * 20000

# Images larger than this are decoded while holding `_PIL_LIMIT_LOCK`: PIL
# re-checks sizes while loading some formats (TIFF), and decoding the few huge
# images one at a time also bounds peak memory when many threads decode.
_LARGE_IMAGE_PIXELS = 1 << 26

# PIL's JPEG opener also returns multi-picture JPEGs (format "MPO"), which
# many phone cameras write.
_PIL_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
_EXPECTED_FORMATS = "JPEG, PNG, BMP, GIF, WebP or TIFF expected"

# Leading bytes of the accepted formats, used only to word error messages.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# The transposition that undoes each EXIF orientation (1 = already upright);
# the same table as `PIL.ImageOps.exif_transpose`, applied here after
# downscaling so that a full-size image is never copied just to rotate it.
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Errors PIL raises for files it cannot parse or decode.
_PIL_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    Image.DecompressionBombError,
)

_PIL_LIMIT_LOCK = threading.Lock()

# The smallest side, in pixels, of an image any stage accepts (training,
# index, search, evaluate and the serving signatures alike).
MIN_SIDE = 8

# The longest side of the pixels the query path sends a model
# (`read_for_model`). An exported model sees S x S pixels (224 by default)
# and its smallest query zoom keeps half of each side, so 1024 leaves every
# view at least twice the detail the model can use.
MODEL_INPUT_MAX_SIDE = 1024

# Files the model's own decoder reads to the same pixels as `load_image`:
# 8-bit colour or grey, no transparency. Anything else (TIFF, 16-bit, CMYK,
# palette, alpha, EXIF-rotated, larger than the limit) is sent re-encoded.
_PASS_THROUGH_MODES = {"JPEG": ("RGB", "L"), "PNG": ("RGB", "L")}


# What one pixel costs while `_decode` brings an image to 8-bit RGB, in
# bytes: PIL's storage of the decoded mode (1, 2 or 4 bytes a pixel; RGB is
# stored as 4) plus the 8-bit copies made from it. 16-bit and wider pixels
# go through NumPy at 4 bytes a pixel, twice. Measured peaks (3000² files):
# 16-bit PNG 10.7, WebP 15.7, RGB PNG 5.9, palette PNG 6.4, grey PNG 1.5.
_WORKING_BYTES_PER_PIXEL = {"1": 5, "L": 5, "P": 9, "I;16": 15}
_WIDE_WORKING_BYTES_PER_PIXEL = 17  # "I", "F" and other 32-bit modes
_DEFAULT_WORKING_BYTES_PER_PIXEL = 8  # RGB, RGBA, CMYK, LA, YCbCr...
# PIL's WebP decoder hands over its RGBA pixels as bytes, copied twice.
_WEBP_WORKING_BYTES_PER_PIXEL = 16

# The most bytes handed to a decoder at once while `DecodeLimits` applies:
# its CPU budget is checked between them.
_BUDGETED_READ_BYTES = 4096

# A marker that starts a JPEG scan; entropy-coded data escapes 0xFF, so
# counting it counts scans (and those of an embedded EXIF thumbnail).
_JPEG_START_OF_SCAN = b"\xff\xda"


class ImageDecodeError(ValueError):
    """An image file that cannot be used; the message names the file and why."""


class DecodeLimitError(ImageDecodeError):
    """Decoding an image would cost more than its `DecodeLimits` allow."""


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """What decoding one untrusted image may cost.

    Attributes:
      max_bytes: the most memory the decode may use, estimated from the
        header (after a JPEG's reduced-scale draft) as the decoded pixels
        plus their 8-bit copies. JPEGs are decoded at the scale the model
        needs, so a large JPEG costs little; PNG, WebP, GIF, BMP and TIFF
        are decoded whole.
      max_jpeg_scans: the most scans a JPEG may have. Each scan of a
        progressive JPEG passes over the whole image, so a few bytes repeated
        as many scans cost seconds of CPU; ordinary files have at most a few
        dozen.
      cpu_seconds: the CPU time the decode may take; checked each time the
        decoder is handed more data (every 4 KiB). A decoder fed at once
        (WebP, compressed TIFF) is bounded by `max_bytes` alone, and a
        JPEG's single libjpeg-turbo call by its pixels and `max_jpeg_scans`
        (a scan over 50 megapixels costs about 9 ms of CPU).
    """

    max_bytes: int = 128 * 2**20
    max_jpeg_scans: int = 100
    cpu_seconds: float = 3.0

    def __post_init__(self):
        for name in ("max_bytes", "max_jpeg_scans"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < 1
            ):
                raise ValueError(f"{name}={value!r} must be an int >= 1.")
        if not self.cpu_seconds > 0:
            raise ValueError(
                f"cpu_seconds={self.cpu_seconds!r} must be positive."
            )


def _describe_bytes(count: int) -> str:
    return f"{count / 2**20:.0f} MiB" if count >= 2**20 else f"{count} bytes"


class _BudgetedReader(io.BytesIO):
    """Image bytes that stop a decode over its CPU budget.

    PIL decodes as it reads (`_decode` asks it to read
    `_BUDGETED_READ_BYTES` at a time), so once `start_loading` is called
    every read first checks the CPU time this thread has spent since; over
    budget it raises `DecodeLimitError`, which ends the decode.
    """

    def __init__(self, data: bytes, name: str, cpu_seconds: float):
        super().__init__(data)
        self.data = data
        self._name = name
        self._cpu_seconds = cpu_seconds
        self._deadline = None

    def start_loading(self) -> None:
        self._deadline = time.thread_time() + self._cpu_seconds

    def read(self, size: int | None = -1) -> bytes:
        if self._deadline is not None:
            if time.thread_time() > self._deadline:
                raise DecodeLimitError(
                    f"{self._name} took more than {self._cpu_seconds:g} s of "
                    "CPU to decode, more than this service spends on one "
                    "image; send it as a plain JPEG or PNG"
                )
        return super().read(size)


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image in display orientation.

    Attributes:
      rgb: (H, W, 3) uint8 colour pixels.
      alpha: (H, W) uint8 opacity (255 = opaque), or None when the file has no
        transparency or every pixel is fully opaque.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None


def load_image(
    path: str, max_side: int | None = None, min_side: int = MIN_SIDE
) -> DecodedImage:
    """Decodes an image file to 8-bit RGB (+ alpha).

    Args:
      path: Image file (JPEG, PNG, BMP, GIF, WebP or TIFF).
      max_side: If given, the image is downscaled (aspect ratio kept) so that its
        longest side is at most this many pixels. Smaller images are not
        upscaled.
      min_side: Files whose width or height (as stored) is below this are
        rejected.

    Returns:
      The decoded image.

    Raises:
      FileNotFoundError: `path` does not exist.
      ImageDecodeError: The file is empty, truncated, corrupt, not an image, too
        small, or larger than `MAX_PIXELS`.
      ValueError: `max_side` or `min_side` is not a positive integer.
    """
    _check_sides(max_side, min_side)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    if size == 0:
        raise ImageDecodeError(f"{path} is empty (0 bytes)")
    with open(path, "rb") as f:
        return _decode(f, path, max_side, min_side)


def decode_image_bytes(
    data: bytes,
    name: str,
    max_side: int | None = None,
    min_side: int = MIN_SIDE,
) -> DecodedImage:
    """Decodes encoded image bytes; same behaviour as `load_image`.

    Args:
      data: The encoded file contents.
      name: What to call the image in error messages (e.g. its path or URL).
      max_side: See `load_image`.
      min_side: See `load_image`.

    Returns:
      The decoded image.

    Raises:
      ImageDecodeError: See `load_image`.
      ValueError: `max_side` or `min_side` is not a positive integer.
    """
    _check_sides(max_side, min_side)
    if not data:
        raise ImageDecodeError(f"{name} is empty (0 bytes)")
    return _decode(io.BytesIO(data), name, max_side, min_side)


def read_for_model(path: str, max_side: int = MODEL_INPUT_MAX_SIDE) -> bytes:
    """The encoded image that the query path sends a model for one file.

    This is the one image contract of beau_tf: index, search, evaluate and
    adaptation accept exactly the files training accepts (`load_image`:
    the same formats, TIFF included, the same minimum size, the same
    reasons in the same words), and a huge image is decoded at reduced size
    here, so no stage holds it at full resolution inside TensorFlow.

    A plain 8-bit JPEG or PNG no larger than `max_side`, upright, is sent as
    its own bytes, so the served embedding equals what any TF Serving client
    sending that file gets. Any other file is decoded here (EXIF orientation
    applied, transparency composited over white, longest side at most
    `max_side`) and sent as a lossless PNG.

    Args:
      path: an image file.
      max_side: the longest side sent to the model.

    Returns:
      JPEG or PNG bytes that the exported signatures decode.

    Raises:
      FileNotFoundError: `path` does not exist.
      IsADirectoryError: `path` is a folder.
      ImageDecodeError: the file is not a usable image (see `load_image`).
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except IsADirectoryError:
        raise IsADirectoryError(
            f"{path} is a folder, not an image file"
        ) from None
    return encode_for_model(data, path, max_side)


def encode_for_model(
    data: bytes,
    name: str,
    max_side: int = MODEL_INPUT_MAX_SIDE,
    limits: DecodeLimits | None = None,
) -> bytes:
    """`read_for_model` for bytes already in memory (an upload, say).

    Args:
      data: the encoded file contents.
      name: what to call the image in error messages.
      max_side: the longest side sent to the model.
      limits: bounds on what decoding may cost, for untrusted bytes; None:
        only `MAX_PIXELS`.

    Returns:
      `data` itself or a lossless PNG; see `read_for_model`.

    Raises:
      DecodeLimitError: decoding would cost more than `limits` allow.
      ImageDecodeError: not a usable image (see `load_image`).
    """
    _check_sides(max_side, MIN_SIDE)
    if not data:
        raise ImageDecodeError(f"{name} is empty (0 bytes)")
    image = _decode(
        _reader(data, name, limits), name, max_side, MIN_SIDE, limits
    )
    if _passes_through(data, max_side):
        return data
    rgb = image.rgb
    if image.alpha is not None:
        opacity = image.alpha[..., np.newaxis].astype(np.float32) / 255.0
        rgb = np.rint(rgb * opacity + 255.0 * (1.0 - opacity)).astype(np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(rgb).save(encoded, format="PNG", compress_level=1)
    return encoded.getvalue()


def _passes_through(data: bytes, max_side: int) -> bool:
    """Whether the model's decoder reads `data` as `load_image` would."""
    with _pixel_limit_policy():
        im = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    return (
        im.mode in _PASS_THROUGH_MODES.get(im.format, ())
        and not im.has_transparency_data
        and max(im.size) <= max_side
        and _exif_orientation(im, "") in (0, 1)
    )


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What encoded image bytes claim, read without decoding any pixel.

    Attributes:
      format: PIL's name of the format ("JPEG", "PNG", ...).
      width: pixels, as stored.
      height: pixels, as stored.
      jpeg_scans: the scans of a JPEG (each a pass over the whole image);
        0 for other formats.
    """

    format: str
    width: int
    height: int
    jpeg_scans: int


def read_header(data: bytes) -> ImageHeader | None:
    """The header of encoded image bytes (any size: no pixel limit applies
    here), or None when it cannot be read."""
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
                image_format, (width, height) = im.format, im.size
        except Exception:  # pylint: disable=broad-exception-caught
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    scans = (
        data.count(_JPEG_START_OF_SCAN)
        if image_format in ("JPEG", "MPO")
        else 0
    )
    return ImageHeader(image_format, width, height, scans)


def list_image_files(root: str) -> list[str]:
    """Lists the image files under a directory, recursively.

    Files are recognised by extension (`IMAGE_EXTENSIONS`, any case); hidden
    files and directories (names starting with ".") are skipped, and symlinked
    directories are not followed.

    Args:
      root: Directory to search.

    Returns:
      Sorted paths, each `root` joined with the path below it.

    Raises:
      FileNotFoundError: `root` does not exist.
      NotADirectoryError: `root` is not a directory.
      OSError: A directory below `root` cannot be read.
    """
    if not os.path.exists(root):
        raise FileNotFoundError(f"image directory {root} does not exist")
    if not os.path.isdir(root):
        raise NotADirectoryError(
            f"{root} is not a directory (a folder of images was expected)"
        )

    def _raise(error: OSError) -> None:
        raise error

    paths = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        # Pruning in place stops os.walk from descending into hidden directories.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if filename.startswith("."):
                continue
            if os.path.splitext(filename)[1].lower() in IMAGE_EXTENSIONS:
                paths.append(os.path.join(dirpath, filename))
    return sorted(paths)


def _check_sides(max_side: int | None, min_side: int) -> None:
    if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
        raise ValueError(
            f"max_side must be a positive integer or None, got {max_side!r}"
        )
    if not isinstance(min_side, int) or min_side < 1:
        raise ValueError(
            f"min_side must be a positive integer, got {min_side!r}"
        )


@contextlib.contextmanager
def _pixel_limit_policy() -> Iterator[None]:
    """Applies `MAX_PIXELS` instead of PIL's default limit inside the block.

    PIL reads its limit from a module global, so it is swapped in and restored
    under a lock; the lock also keeps concurrent calls from restoring each
    other's values. DecompressionBombWarning (raised by PIL between `MAX_PIXELS`
    and twice that) is silenced because `_decode` rejects those sizes itself
    with a clearer error.
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _reader(data: bytes, name: str, limits: DecodeLimits | None) -> BinaryIO:
    if limits is None:
        return io.BytesIO(data)
    return _BudgetedReader(data, name, limits.cpu_seconds)


def _working_bytes(im: Image.Image) -> int:
    """What decoding `im` (at its drafted size) to 8-bit RGB costs, bytes."""
    mode = im.mode
    if mode in _WORKING_BYTES_PER_PIXEL:
        per_pixel = _WORKING_BYTES_PER_PIXEL[mode]
    elif mode.startswith("I;16"):
        per_pixel = _WORKING_BYTES_PER_PIXEL["I;16"]
    elif mode.startswith("I") or mode == "F":
        per_pixel = _WIDE_WORKING_BYTES_PER_PIXEL
    else:
        per_pixel = _DEFAULT_WORKING_BYTES_PER_PIXEL
    if im.format == "WEBP":
        per_pixel = max(per_pixel, _WEBP_WORKING_BYTES_PER_PIXEL)
    return im.width * im.height * per_pixel


def _check_cost(im: Image.Image, fp: BinaryIO, name: str, limits) -> None:
    """Raises `DecodeLimitError` if decoding `im` would exceed `limits`."""
    if im.format in ("JPEG", "MPO"):
        scans = fp.data.count(_JPEG_START_OF_SCAN)
        if scans > limits.max_jpeg_scans:
            raise DecodeLimitError(
                f"{name} is a JPEG of {scans} scans; at most "
                f"{limits.max_jpeg_scans} accepted (each scan is a pass over "
                "the whole image); save it as a baseline JPEG"
            )
    cost = _working_bytes(im)
    if cost > limits.max_bytes:
        raise DecodeLimitError(
            f"{name} is a {im.width}×{im.height} {im.format} image "
            f"({im.mode} pixels); decoding it would take {_describe_bytes(cost)}, "
            f"more than the {_describe_bytes(limits.max_bytes)} allowed per "
            "image (JPEGs are decoded at reduced size): send a "
            "JPEG, or a smaller image"
        )


def _decode(
    fp: BinaryIO,
    name: str,
    max_side: int | None,
    min_side: int,
    limits: DecodeLimits | None = None,
) -> DecodedImage:
    """Decodes an open file; see `load_image` and `encode_for_model`."""
    with _pixel_limit_policy():
        im = _open(fp, name)
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"{name} is {width}×{height} pixels ({width * height / 1e6:.0f} "
            f"megapixels); at most {MAX_PIXELS / 1e6:.0f} megapixels accepted"
        )
    if min(width, height) < min_side:
        raise ImageDecodeError(
            f"{name} is {width}×{height} pixels; at least {min_side} px per side "
            "expected"
        )

    target = _fit_within(im.size, max_side)
    if target != im.size and im.format in ("JPEG", "MPO"):
        # Lets libjpeg decode at 1/2, 1/4 or 1/8 scale (never below `target`), so
        # a huge JPEG is never held at full resolution.
        im.draft(im.mode, target)
    if limits is not None:
        _check_cost(im, fp, name, limits)
        # Small reads, so that the CPU budget is checked often.
        im.decodermaxblock = _BUDGETED_READ_BYTES
        fp.start_loading()

    decoded = _decode_jpeg(im, width, fp, name)
    if decoded is not None:
        orientation = _exif_orientation(im, name)  # from the JPEG's header
        im = decoded
    else:
        # After loading: a PNG's EXIF may follow its pixels.
        if im.width * im.height > _LARGE_IMAGE_PIXELS:
            with _pixel_limit_policy():
                _load(im, name, fp)
        else:
            _load(im, name, fp)
        orientation = _exif_orientation(im, name)

    im = _to_8bit(im, name)
    if im.size != target:
        # reducing_gap first shrinks by an integer factor with a box filter, which
        # is much faster than LANCZOS over the full image and looks the same.
        im = im.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation in _EXIF_TRANSPOSE:
        im = im.transpose(_EXIF_TRANSPOSE[orientation])
    return _to_arrays(im)


def _decode_jpeg(
    im: Image.Image, stored_width: int, fp: BinaryIO, name: str
) -> Image.Image | None:
    """The pixels of a colour or grey JPEG at `im`'s drafted size, or None
    for anything else (other formats, CMYK JPEGs), which PIL decodes.

    libjpeg-turbo (through simplejpeg, which gives the same pixels as PIL's
    libjpeg at every scale) reports what PIL's decoder ignores: a scan cut
    short but closed with an end-of-image marker decodes, with a warning,
    to grey below the cut. That is a truncated file, refused like one; the
    other warnings (extra bytes between markers, say) are accepted, as PIL
    accepts them. The decode is one call, bounded by the pixel and scan
    limits rather than the CPU budget.
    """
    if im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L"):
        return None
    fp.seek(0)
    data = fp.data if isinstance(fp, _BudgetedReader) else fp.read()
    options = dict(
        colorspace="RGB" if im.mode == "RGB" else "GRAY",
        min_width=im.width,
        min_height=im.height,
        min_factor=max(1, round(stored_width / im.width)),  # PIL's draft
    )
    try:
        pixels = simplejpeg.decode_jpeg(data, strict=True, **options)
    except ValueError as strict_error:
        if "premature end" in str(strict_error).lower():
            raise ImageDecodeError(
                f"{name} is truncated (libjpeg: {strict_error}); re-download "
                "or re-export it"
            ) from None
        try:
            pixels = simplejpeg.decode_jpeg(data, strict=False, **options)
        except ValueError as error:
            raise ImageDecodeError(_decode_failure(fp, name, error)) from None
    if pixels.shape[:2] != (im.height, im.width):
        return None  # another scale than PIL's draft: let PIL decode it
    if im.mode == "L":
        pixels = pixels[..., 0]  # (H, W, 1) -> (H, W)
    return Image.fromarray(pixels)


def _open(fp: BinaryIO, name: str) -> Image.Image:
    """Reads the header; the pixels are decoded by `_load`."""
    try:
        # Restricting formats keeps PIL from guessing exotic formats (e.g. TGA,
        # which has no signature) for files that are not images at all.
        return Image.open(fp, formats=_PIL_FORMATS)
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(_not_decodable(fp, name)) from None
    except _PIL_DECODE_ERRORS as e:
        raise ImageDecodeError(_decode_failure(fp, name, e)) from e


def _load(im: Image.Image, name: str, fp: BinaryIO) -> None:
    """Decodes every pixel now, so bad data fails here and not downstream."""
    try:
        im.load()
    except DecodeLimitError:
        raise
    except _PIL_DECODE_ERRORS as e:
        raise ImageDecodeError(_decode_failure(fp, name, e)) from e


def _sniff_format(fp: BinaryIO) -> str | None:
    """Returns the format the file's first bytes announce, if any."""
    try:
        fp.seek(0)
        head = fp.read(16)
    except (OSError, ValueError):
        return None
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _not_decodable(fp: BinaryIO, name: str) -> str:
    fmt = _sniff_format(fp)
    if fmt is not None:
        return (
            f"{name} starts like a {fmt} file but its header cannot be read; "
            "it is probably truncated or corrupt"
        )
    return f"{name} is not a decodable image ({_EXPECTED_FORMATS})"


def _decode_failure(fp: BinaryIO, name: str, error: Exception) -> str:
    if "truncated" in str(error).lower():
        return (
            f"{name} is truncated (PIL: {error}); re-download or re-export it"
        )
    fmt = _sniff_format(fp) or "an image"
    return f"{name} could not be decoded as {fmt} ({error}); it is probably corrupt"


def _fit_within(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The size with the longest side at most `max_side`, aspect ratio kept."""
    width, height = size
    longest = max(width, height)
    if max_side is None or longest <= max_side:
        return size
    scale = max_side / longest
    return (
        max(1, round(width * scale)) if width < longest else max_side,
        max(1, round(height * scale)) if height < longest else max_side,
    )


def _exif_orientation(im: Image.Image, name: str) -> int:
    try:
        return int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception as e:  # pylint: disable=broad-exception-caught
        # EXIF is metadata: a malformed block must not make usable pixels unusable.
        logging.warning("Ignoring unreadable EXIF data in %s: %s", name, e)
        return 1


def _to_8bit(im: Image.Image, name: str) -> Image.Image:
    """Converts any PIL mode to one of "L", "LA", "RGB" or "RGBA"."""
    mode = im.mode
    if mode in ("L", "RGB"):
        # A tRNS chunk can make one grey level or colour transparent.
        return im.convert(mode + "A") if im.has_transparency_data else im
    if mode in ("LA", "RGBA"):
        return im
    if mode in ("P", "PA"):
        has_alpha = (
            mode == "PA"
            or im.has_transparency_data
            or (im.palette is not None and im.palette.mode == "RGBA")
        )
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode == "1":
        return im.convert("L")
    if mode == "La":
        return im.convert("LA")
    if mode == "RGBa":
        return im.convert("RGBA")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_to_uint8(np.asarray(im)), mode="L")
    try:
        return im.convert("RGB")  # CMYK, YCbCr, RGBX, LAB, HSV.
    except ValueError as e:
        raise ImageDecodeError(
            f"{name} has pixel mode {mode}, which cannot be converted to RGB "
            f"({e}); save it as 8-bit RGB"
        ) from e


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Maps 16-bit, 32-bit integer or float pixels to 0..255.

    16-bit data (any unsigned 16-bit array) uses the full 0..65535 range.
    Integer data already in 0..255 or 0..65535 is read as 8- or 16-bit. Float
    data in [0, 1] or [0, 255] is scaled accordingly. Anything else is stretched
    from its minimum to its maximum.

    Args:
      values: (H, W) pixel values.

    Returns:
      (H, W) uint8 pixels.
    """
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if values.dtype.kind == "f":
        values = np.nan_to_num(
            values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0
        )
    low, high = float(values.min()), float(values.max())
    if values.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0 and high <= 255:
        scaled = values
    elif values.dtype.kind in "iu" and low >= 0 and high <= 65535:
        scaled = values / 257.0
    elif high > low:
        scaled = (values.astype(np.float32) - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values, dtype=np.float32)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_arrays(im: Image.Image) -> DecodedImage:
    """Splits an L, LA, RGB or RGBA image into RGB and alpha arrays."""
    pixels = np.array(im)  # A writable copy, unlike np.asarray.
    if im.mode == "RGB":
        rgb = pixels
    elif im.mode == "RGBA":
        rgb = np.ascontiguousarray(pixels[..., :3])
    else:
        gray = pixels if im.mode == "L" else pixels[..., 0]
        rgb = np.repeat(
            gray[..., np.newaxis], 3, axis=-1
        )  # (H, W) -> (H, W, 3)
    alpha = None
    if im.mode in ("LA", "RGBA"):
        alpha = np.ascontiguousarray(pixels[..., -1])
        if alpha.min() == 255:
            alpha = None
    return DecodedImage(rgb=rgb, alpha=alpha)
