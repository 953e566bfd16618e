"""Tiny exports and image files shared by the serving and retrieval tests.

`tiny_model` builds in milliseconds and exports in seconds, so tests can
exercise the real signatures (`beau_tf.serving.saved_model`) end to end.
"""

import io
import os

import keras
import numpy as np
from PIL import Image

from beau_tf.serving import saved_model

IMAGE_SIZE = 16
DIM = 8


def tiny_model(seed: int, image_size: int = IMAGE_SIZE, dim: int = DIM):
    """A model with the extractor's interface: (B, S, S, 3) pixels in
    [0, 255] -> {"embedding": (B, dim) unit rows, "mask": (B, S, S, 1)};
    `seed` sets its weights."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((image_size, image_size, 3), name="image")
    scaled = keras.layers.Rescaling(1.0 / 255.0)(image)
    features = keras.layers.Conv2D(dim, 3, activation="relu")(scaled)
    pooled = keras.layers.GlobalAveragePooling2D()(features)  # (B, dim)
    embedding = keras.layers.UnitNormalization()(
        keras.layers.Dense(dim)(pooled)
    )
    mask = keras.layers.Conv2D(1, 1, activation="sigmoid")(scaled)
    return keras.Model(image, {"embedding": embedding, "mask": mask})


def export_tiny(
    export_base: str,
    seed: int = 0,
    model_name: str = "beau_tf",
    version: int = 1,
    query_zooms=(1.0, 0.5),
) -> str:
    """Exports `tiny_model(seed)`; returns the version folder."""
    return saved_model.export_saved_model(
        tiny_model(seed),
        export_base,
        model_name,
        version=version,
        query_zooms=query_zooms,
    )


def encode(array: np.ndarray, image_format: str) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, format=image_format)
    return stream.getvalue()


def random_rgb(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


# What the model's signature says of each kind of bad bytes.
BAD_BYTES_STATUS = {
    "empty": "empty (0 bytes)",
    "text": "not a decodable image (JPEG, PNG, GIF, BMP or WebP expected)",
    "truncated_jpeg": (
        "a JPEG file that cannot be decoded (probably truncated or corrupt)"
    ),
    "one_pixel_png": "1×1 pixels; at least 8 px per side expected",
}


def bad_bytes() -> dict[str, bytes]:
    """Encoded "images" that no stage accepts, by the keys of
    `BAD_BYTES_STATUS`."""
    jpeg = encode(random_rgb(40, 30, 9), "JPEG")
    return {
        "empty": b"",
        "text": b"this is text, not a photo",
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "one_pixel_png": encode(np.zeros((1, 1, 3), np.uint8), "PNG"),
    }


def good_bytes() -> list[bytes]:
    """Four distinct usable images: JPEG, PNG, a grey PNG and a tall JPEG."""
    grey = random_rgb(20, 20, 3)[..., 0]
    return [
        encode(random_rgb(30, 40, 1), "JPEG"),
        encode(random_rgb(24, 32, 2), "PNG"),
        encode(grey, "PNG"),
        encode(random_rgb(48, 12, 4), "JPEG"),
    ]


def write_files(folder: str) -> tuple[list[str], list[str]]:
    """Writes good and bad image files, interleaved.

    Returns:
      `(paths, bad)`: every file in order, and the bad ones among them (a
      zero-byte JPEG, text named .png, a truncated JPEG and a 1×1 PNG); the
      five good ones are JPEG, PNG and TIFF files.
    """
    os.makedirs(folder, exist_ok=True)
    bad = bad_bytes()
    named = [
        ("a.jpg", good_bytes()[0]),
        ("empty.jpg", bad["empty"]),
        ("b.png", good_bytes()[1]),
        ("text.png", bad["text"]),
        ("truncated.jpg", bad["truncated_jpeg"]),
        ("c.png", good_bytes()[2]),
        ("tiny.png", bad["one_pixel_png"]),
        ("d.jpg", good_bytes()[3]),
        ("e.tif", encode(random_rgb(20, 28, 5), "TIFF")),  # sent as PNG
    ]
    paths, bad_paths = [], []
    for name, data in named:
        path = os.path.join(folder, name)
        with open(path, "wb") as stream:
            stream.write(data)
        paths.append(path)
        if name in ("empty.jpg", "text.png", "truncated.jpg", "tiny.png"):
            bad_paths.append(path)
    return paths, bad_paths
