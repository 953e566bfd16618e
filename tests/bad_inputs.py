"""A corpus of awkward image files, and what every stage must make of them.

`write_corpus` writes one file per case into a folder. Usable files must be
accepted by every entry point (training, export, index, search, evaluate,
the search service); unusable ones must be skipped with one line that names
the file and gives `reason`, while the rest of the batch goes on.
"""

import dataclasses
import io
import os

import numpy as np
from PIL import ExifTags
from PIL import Image


@dataclasses.dataclass(frozen=True)
class Case:
    filename: str
    reason: str | None  # None: usable; else a regex of the skip reason.


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _product(seed: int, size: int = 96) -> Image.Image:
    """A coloured block on white: usable by training's mask extraction too."""
    pixels = np.full((size, size, 3), 255, np.uint8)
    inner = _noise(size // 2, size // 3, seed)
    top, left = size // 4, size // 3
    pixels[top : top + inner.shape[0], left : left + inner.shape[1]] = inner
    return Image.fromarray(pixels)


def _encoded(image: Image.Image, **kwargs) -> bytes:
    stream = io.BytesIO()
    image.save(stream, **kwargs)
    return stream.getvalue()


def _animated_gif(seed: int) -> bytes:
    frames = [_product(seed), _product(seed + 100)]
    return _encoded(
        frames[0], format="GIF", save_all=True, append_images=frames[1:]
    )


def _exif_rotated(seed: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return _encoded(_product(seed), format="JPEG", exif=exif)


def _huge() -> bytes:
    image = Image.new("RGB", (12000, 12000), (255, 255, 255))
    image.paste((180, 40, 40), (3000, 4000, 9000, 8000))
    return _encoded(image, format="JPEG", quality=80)


def _sixteen_bit(seed: int) -> bytes:
    grey = np.asarray(_product(seed).convert("L"), np.uint16) * 257
    return _encoded(Image.fromarray(grey), format="PNG")


def _palette_with_alpha(seed: int) -> bytes:
    image = _product(seed).convert("RGBA")
    pixels = np.asarray(image).copy()
    pixels[..., 3] = np.where(pixels[..., :3].min(axis=-1) == 255, 0, 255)
    return _encoded(Image.fromarray(pixels).quantize(colors=64), format="PNG")


def _cases(with_huge: bool) -> list[tuple[Case, bytes]]:
    jpeg = _encoded(_product(0), format="JPEG")
    cases = [
        (Case("zero_byte.jpg", r"is empty \(0 bytes\)"), b""),
        (
            Case("text.png", "is not a decodable image"),
            b"a text file, not an image\n",
        ),
        (Case("truncated.jpg", "truncated"), jpeg[: len(jpeg) // 2]),
        (
            Case("one_pixel.png", "at least 8 px per side"),
            _encoded(Image.new("RGB", (1, 1)), format="PNG"),
        ),
        (
            Case("cmyk.jpg", None),
            _encoded(_product(1).convert("CMYK"), format="JPEG"),
        ),
        (Case("sixteen_bit.png", None), _sixteen_bit(2)),
        (Case("palette_alpha.png", None), _palette_with_alpha(3)),
        (Case("photo.tif", None), _encoded(_product(4), format="TIFF")),
        (Case("animated.gif", None), _animated_gif(5)),
        (Case("exif_rotated.jpg", None), _exif_rotated(6)),
        (Case("plain.jpg", None), _encoded(_product(7), format="JPEG")),
    ]
    if with_huge:
        cases.append((Case("huge.jpg", None), _huge()))
    return cases


def write_corpus(directory: str, with_huge: bool = True) -> list[Case]:
    """Writes every case into `directory`; returns the cases written."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for case, data in _cases(with_huge):
        with open(os.path.join(directory, case.filename), "wb") as stream:
            stream.write(data)
        written.append(case)
    return written
