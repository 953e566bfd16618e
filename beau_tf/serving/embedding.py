"""Embedding image files through an exported model, in batches.

Each file is read by `beau_tf.data.decode.read_for_model`, the image contract
training shares, and its bytes go to the model's signature (a local
SavedModel, or TF Serving over gRPC: both are an `EmbedFn`), which decodes
them exactly as it decodes what any TF Serving client sends. A file that
cannot be read, or that the model reports unusable, is skipped with one
warning naming it and the reason; the rest are embedded.

`beau_tf.serving.models.open_model` gives `EmbedFn`s held to the model an
index was built with; `load_signatures` and `as_embed_fn` are what it (and
training, which embeds through a teacher export) builds on.
"""

import collections
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures

from absl import logging
import numpy as np
import tensorflow as tf

from beau_tf.common import progress
from beau_tf.data import decode
from beau_tf.serving import contract
from beau_tf.serving import trust


@dataclasses.dataclass(frozen=True)
class EmbeddedBatch:
    """What a model answered for a batch of encoded images.

    Attributes:
      embeddings: (B, D) float32; unit rows for usable images, zero rows for
        the others.
      statuses: B strings, `contract.STATUS_OK` or why the image cannot be
        used (see `beau_tf.serving.contract`).
      model_fingerprint: the answering model's `model_fingerprint`.
      model_version: the version that answered, where the answer names it
        (TF Serving's does); else None.
    """

    embeddings: np.ndarray
    statuses: list[str]
    model_fingerprint: str
    model_version: int | None = None


# B encoded images -> what the model answered for them.
EmbedFn = Callable[[Sequence[bytes]], EmbeddedBatch]


def as_embed_fn(
    signature: Callable[..., Mapping[str, tf.Tensor]],
    model_version: int | None = None,
) -> EmbedFn:
    """An exported signature (or a `ServingModule` function) as an `EmbedFn`.

    Args:
      signature: takes `images`, (B,) tf.string, and returns the outputs of
        `beau_tf.serving.contract`'s signatures.
      model_version: the version its answers name (the export's), if known.
    """

    def embed(images: Sequence[bytes]) -> EmbeddedBatch:
        outputs = signature(images=tf.constant(list(images), tf.string))
        return EmbeddedBatch(
            embeddings=outputs[contract.EMBEDDING_OUTPUT].numpy(),
            statuses=[
                status.decode("utf-8")
                for status in outputs[contract.STATUS_OUTPUT].numpy()
            ],
            # (B,) copies of one value; empty for an empty batch.
            model_fingerprint=b"".join(
                outputs[contract.MODEL_FINGERPRINT_OUTPUT].numpy()[:1]
            ).decode("utf-8"),
            model_version=model_version,
        )

    return embed


def load_signatures(
    saved_model_dir: str, signature_names: Sequence[str]
) -> dict[str, Callable[..., Mapping[str, tf.Tensor]]]:
    """Loads an export once and returns the named signatures, each checked
    to answer with per-image statuses and the model fingerprint.

    Raises:
        FileNotFoundError: `saved_model_dir` holds no SavedModel.
        ValueError: a signature is missing.
        contract.IncompatibleModelError: a signature lacks per-image
            statuses or the model fingerprint (`contract.check_outputs`).
        trust.UntrustedExportError: the weights are not those the export
            recorded, or a signature reaches files (`trust.check_export`).
    """
    if not tf.saved_model.contains_saved_model(saved_model_dir):
        raise FileNotFoundError(
            f"{saved_model_dir} holds no SavedModel (an exported version "
            "directory such as exported/beau_tf/1 expected; "
            "python -m beau_tf.export writes one)."
        )
    trust.check_export(saved_model_dir)
    signatures = tf.saved_model.load(saved_model_dir).signatures
    for name in signature_names:
        if name not in signatures:
            raise ValueError(
                f"{saved_model_dir} has no signature {name!r} (it has "
                f"{sorted(signatures)}); re-export it with python -m "
                "beau_tf.export, or query with the signature it has."
            )
        contract.check_outputs(
            signatures[name].structured_outputs,
            f"{saved_model_dir}'s {name!r} signature",
        )
    return {name: signatures[name] for name in signature_names}


def load_embed_fn(
    saved_model_dir: str, signature_name: str = contract.SIGNATURE_NAME
) -> EmbedFn:
    """A signature of an exported model (`serving_default`: one view per
    image; `query_multiscale`: see `beau_tf.serving.contract`), as an
    `EmbedFn`.

    Raises:
        See `load_signatures`.
    """
    signatures = load_signatures(saved_model_dir, [signature_name])
    return as_embed_fn(signatures[signature_name])


def _read(path: str) -> bytes | Exception:
    """The file's bytes for the model, or why it cannot be used."""
    try:
        return decode.read_for_model(path)
    except (decode.ImageDecodeError, OSError) as error:
        return error


def _read_ahead(
    paths: Sequence[str], batch_size: int, workers: int, batches_ahead: int = 2
) -> Iterator[list[tuple[int, bytes | Exception]]]:
    """Batches of `(index in paths, bytes or error)`, in order, read by a
    thread pool up to `batches_ahead` batches ahead of the consumer."""
    starts = iter(range(0, len(paths), batch_size))
    with futures.ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(start: int) -> list:
            stop = min(start + batch_size, len(paths))
            return [
                (i, pool.submit(_read, paths[i])) for i in range(start, stop)
            ]

        queued = collections.deque(
            submit(start) for _, start in zip(range(1 + batches_ahead), starts)
        )
        while queued:
            batch = queued.popleft()
            start = next(starts, None)
            if start is not None:
                queued.append(submit(start))
            yield [(index, future.result()) for index, future in batch]


def _check_answer(embedded: EmbeddedBatch, count: int) -> None:
    if len(embedded.statuses) != count or len(embedded.embeddings) != count:
        raise ValueError(
            f"The model answered {len(embedded.embeddings)} embeddings and "
            f"{len(embedded.statuses)} statuses for {count} images; check "
            "the served signature (beau_tf.serving.contract)."
        )


def embed_files(
    embed_fn: EmbedFn,
    paths: Sequence[str],
    batch_size: int = 32,
    description: str = "Embedding images",
    read_workers: int = 4,
) -> tuple[np.ndarray, list[int]]:
    """Embeds image files; files that cannot be used are skipped by name.

    Files are read (`decode.read_for_model`) by a small thread pool ahead of
    the model, order kept. A file that cannot be read, or whose status from
    the model is not `contract.STATUS_OK`, is skipped with one warning that
    names it and the reason.

    Args:
        embed_fn: one of `models.open_model(...).embed_fns`, or from
            `load_embed_fn`, `as_embed_fn` or a TF Serving client
            (`beau_tf.serving.grpc_client.PredictionClient`).
        paths: image files.
        batch_size: images per model call.
        description: progress label.
        read_workers: threads reading files.

    Returns:
        `(embeddings (M, D) float32, kept)`: `kept[i]` is the index in `paths`
        of embedding row `i`.

    Raises:
        ValueError: no file could be embedded, or `batch_size` < 1.
    """
    paths = list(paths)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; at least 1 expected.")
    batches = _read_ahead(paths, batch_size, read_workers)
    rows, kept = [], []
    for batch in progress.track(batches, len(paths), description, size=len):
        indices, images = [], []
        for index, read in batch:
            if isinstance(read, Exception):
                logging.warning("Skipped: %s", read)
            else:
                indices.append(index)
                images.append(read)
        if not images:
            continue
        embedded = embed_fn(images)
        _check_answer(embedded, len(images))
        usable = [status == contract.STATUS_OK for status in embedded.statuses]
        for index, status, ok in zip(indices, embedded.statuses, usable):
            if not ok:
                logging.warning("Skipped: %s is %s", paths[index], status)
        rows.append(np.asarray(embedded.embeddings, np.float32)[usable])
        kept.extend(index for index, ok in zip(indices, usable) if ok)
    if not kept:
        raise ValueError(f"None of the {len(paths)} images could be embedded.")
    skipped = len(paths) - len(kept)
    if skipped:
        logging.warning("%d of %d images skipped.", skipped, len(paths))
    return np.concatenate(rows), kept
