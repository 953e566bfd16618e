"""A fake model and tiny catalogue indexes for the service tests.

The fake model embeds an image as a unit vector drawn from a hash of its
bytes, so an uploaded catalogue image finds itself first, with no
TensorFlow model; a 13 x 13 image plays the image the model refuses.
"""

import hashlib
import io
import os
import threading
import time

import numpy as np
from PIL import Image

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import scann_index
from beau_tf.search_service import embedders
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import models

DIM = 8
NUM_ITEMS = 12
REFUSED_SIDE = 13
REFUSED_STATUS = "13×13 pixels; the fake model refuses that size"


def identity(version: int = 1, weights: str = "weights-1") -> dict:
    return {
        "model_name": "fake",
        "model_version": version,
        "signature_fingerprint": "signature-1",
        "model_fingerprint": weights,
        "embedding_dim": DIM,
    }


def encode_png(rgb: np.ndarray) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(rgb).save(stream, format="PNG")
    return stream.getvalue()


def photo(seed: int, width: int = 40, height: int = 32) -> bytes:
    """A small noisy RGB PNG, different for every seed."""
    rng = np.random.default_rng(seed)
    return encode_png(rng.integers(0, 256, (height, width, 3), np.uint8))


def embedding_of(image: bytes) -> np.ndarray:
    """(D,) unit vector from the image bytes' hash."""
    seed = int.from_bytes(hashlib.sha256(image).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(DIM)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class FakeModel:
    """Counts calls; `delay_seconds` per call lets requests pile up,
    `fail_with` makes every call raise, and `answers_as` is the model
    fingerprint its answers carry."""

    def __init__(self, model_identity: dict | None = None):
        self.identity = model_identity or identity()
        self.calls = []  # batch sizes, one per call
        self.delay_seconds = 0.0
        self.fail_with: Exception | None = None
        self.answers_as = self.identity.get("model_fingerprint", "")
        self._lock = threading.Lock()

    def embed(self, images):
        with self._lock:
            self.calls.append(len(images))
        time.sleep(self.delay_seconds)
        if self.fail_with is not None:
            raise self.fail_with
        statuses = [
            (
                REFUSED_STATUS
                if Image.open(io.BytesIO(image)).size == (REFUSED_SIDE,) * 2
                else contract.STATUS_OK
            )
            for image in images
        ]
        rows = [
            (
                embedding_of(image)
                if status == contract.STATUS_OK
                else np.zeros(DIM, np.float32)
            )
            for image, status in zip(images, statuses)
        ]
        return embedding_lib.EmbeddedBatch(
            embeddings=np.stack(rows),  # (B, D)
            statuses=statuses,
            model_fingerprint=self.answers_as,
        )

    def masks(self, images):
        """A (B, 16, 16) mask: ones in the middle half."""
        masks = np.zeros((len(images), 16, 16), np.float32)
        masks[:, 4:12, 4:12] = 1.0
        return masks

    def as_embedding_model(self) -> models.EmbeddingModel:
        """The fake as the service opens a model: held to its identity
        (`models.pin`), failures as `embedders.EmbeddingUnavailableError`."""
        return embedders.for_service(
            models.EmbeddingModel(
                identity=self.identity,
                embed_fns={
                    name: models.pin(
                        self.embed, self.identity, "the fake model"
                    )
                    for name in contract.QUERY_SIGNATURES
                },
                mask_fn=self.masks,
                source="the fake model",
            )
        )


def write_catalogue(
    folder: str, count: int = NUM_ITEMS, make_image=photo
) -> tuple:
    """Writes `count` catalogue PNGs, `make_image(number)` each; returns
    (item ids, paths, bytes).

    Item ids hold a "/", as real ones do (brand/product).
    """
    os.makedirs(folder, exist_ok=True)
    ids, paths, images = [], [], []
    for number in range(count):
        image = make_image(number)
        path = os.path.join(folder, f"item{number}.png")
        with open(path, "wb") as stream:
            stream.write(image)
        ids.append(f"brand/item-{number}")
        paths.append(path)
        images.append(image)
    return ids, paths, images


def write_index(
    index_folder: str,
    catalogue_folder: str,
    model_identity: dict | None = None,
    count: int = NUM_ITEMS,
) -> list[bytes]:
    """A brute-force index of the fake catalogue; returns its images."""
    ids, paths, images = write_catalogue(catalogue_folder, count)
    embeddings = np.stack([embedding_of(image) for image in images])
    index_dir_lib.build_and_save(
        index_dir_lib.EmbeddedCatalog(
            embeddings, ids, paths, model_identity or identity()
        ),
        index_folder,
        scann_index.IndexParams("brute_force", 5),
    )
    return images
