"""Embedding a catalogue in shards, one machine each, and joining them.

  python -m beau_tf.index --model=... --catalog=... --shard_dir=shards/ \\
      --num_shards=8 --shard_index=3           # on each machine
  python -m beau_tf.index --merge_shards=shards/ --index_dir=indexes/v1

Shard `i` of `n` is the contiguous run `shard_bounds(N, n, i)` of the
catalogue's (sorted) items, written as `shard-0000i-of-0000n.npz`, so joining
them in shard order restores the catalogue order. A shard may also list the
files of its run that were skipped, with the reason
(`beau_tf.retrieval.beam_embedding` records them; `read_skipped` joins them).
"""

import glob
import json
import os
from collections.abc import Sequence

import numpy as np

from beau_tf.common import files
from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import models
from beau_tf.serving import runtimes

SHARD_PATTERN = "shard-{index:05d}-of-{count:05d}.npz"


def shard_bounds(
    num_items: int, num_shards: int, shard_index: int
) -> tuple[int, int]:
    """`[start, stop)` of shard `shard_index` of `num_shards` contiguous ones.

    Raises:
        ValueError: a shard index outside `[0, num_shards)`.
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"shard_index={shard_index} with num_shards={num_shards}; "
            "0 <= shard_index < num_shards expected."
        )
    start = num_items * shard_index // num_shards
    stop = num_items * (shard_index + 1) // num_shards
    return start, stop


def embed_catalog_shard(
    saved_model_dir: str,
    model_identity: dict,
    items: list[catalog_lib.CatalogItem],
    num_shards: int = 1,
    shard_index: int = 0,
    batch_size: int = 32,
    runtime: str = runtimes.TENSORFLOW,
) -> index_dir_lib.EmbeddedCatalog:
    """Embeds shard `shard_index` of `num_shards` of a catalogue.

    Shards are contiguous runs of the catalogue's (sorted) items, so merging
    them in shard order restores the catalogue order. The export is held to
    `model_identity` (`beau_tf.serving.models.open_model`), the identity the
    index will record, so every shard of a run embeds with one model;
    `runtime` runs it (`beau_tf.serving.runtimes`).

    Raises:
        contract.IncompatibleModelError: `saved_model_dir` is not the model
            `model_identity` names.
    """
    start, stop = shard_bounds(len(items), num_shards, shard_index)
    shard = items[start:stop]
    with models.open_model(
        saved_model_dir,
        model_identity,
        signature_names=[contract.SIGNATURE_NAME],
        runtime=runtime,
    ) as model:
        embeddings, kept = embedding_lib.embed_files(
            model.embed_fns[contract.SIGNATURE_NAME],
            [item.path for item in shard],
            batch_size=batch_size,
            description=(
                f"Embedding catalogue shard {shard_index + 1}/{num_shards}"
            ),
        )
    return index_dir_lib.EmbeddedCatalog(
        embeddings=embeddings,
        item_ids=[shard[i].item_id for i in kept],
        paths=[shard[i].path for i in kept],
        model_identity=model_identity,
    )


def save_shard(
    embedded: index_dir_lib.EmbeddedCatalog,
    shard_dir: str,
    num_shards: int,
    shard_index: int,
    skipped: Sequence[tuple[str, str]] = (),
) -> str:
    """Writes one shard's embeddings as `.npz`, atomically; returns its path.

    Args:
        embedded: the shard's embedded items, in catalogue order.
        shard_dir: the folder of the run's shards.
        num_shards: how many shards the run has.
        shard_index: which one this is.
        skipped: `(path, reason)` of the shard's files that were skipped.
    """
    path = os.path.join(
        shard_dir, SHARD_PATTERN.format(index=shard_index, count=num_shards)
    )
    with files.atomic_path(path, ".npz") as temporary:
        np.savez(
            temporary,
            embeddings=embedded.embeddings,
            item_ids=np.asarray(embedded.item_ids, dtype=str),
            paths=np.asarray(embedded.paths, dtype=str),
            model_identity=json.dumps(embedded.model_identity),
            skipped=np.asarray(list(skipped), dtype=str).reshape(-1, 2),
        )
    return path


def merge_shards(
    shard_dir: str, embeddings_path: str | None = None
) -> index_dir_lib.EmbeddedCatalog:
    """Joins all shards of one run, checking none is missing or foreign.

    The shards are read one at a time into one (N, D) array, so the join
    never holds two copies of the catalogue.

    Args:
        shard_dir: the run's shards.
        embeddings_path: where to hold the joined embeddings, an .npy file
            memory-mapped instead of memory (10 GiB at 10M x 256-d); in
            memory when None.

    Raises:
        FileNotFoundError: no shard, or a shard of the run is missing.
        ValueError: shards embedded by different models.
    """
    paths = sorted(glob.glob(os.path.join(shard_dir, "shard-*-of-*.npz")))
    if not paths:
        raise FileNotFoundError(
            f"No shard-*-of-*.npz under {shard_dir} (python -m beau_tf.index "
            "--num_shards=N --shard_index=I writes them)."
        )
    count = int(os.path.basename(paths[0]).split("-of-")[1].split(".")[0])
    expected = [
        os.path.join(shard_dir, SHARD_PATTERN.format(index=i, count=count))
        for i in range(count)
    ]
    missing = sorted(set(expected) - set(paths))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {count} shards missing under {shard_dir}: "
            f"{', '.join(os.path.basename(p) for p in missing[:5])}"
        )
    parts = [np.load(path) for path in expected]
    identities = {str(part["model_identity"]) for part in parts}
    if len(identities) > 1:
        raise ValueError(
            f"Shards under {shard_dir} come from different models; re-embed "
            "them all with one exported model version."
        )
    item_ids = [str(i) for p in parts for i in p["item_ids"]]
    paths = [str(i) for p in parts for i in p["paths"]]
    dim = next(
        (p["embeddings"].shape[1] for p in parts if len(p["item_ids"])), 0
    )
    shape = (len(item_ids), dim)
    if embeddings_path is None:
        embeddings = np.empty(shape, np.float32)
    else:
        embeddings = np.lib.format.open_memmap(
            embeddings_path, mode="w+", dtype=np.float32, shape=shape
        )
    start = 0
    for part in parts:
        rows = part["embeddings"]  # one shard in memory at a time
        embeddings[start : start + len(rows)] = rows
        start += len(rows)
    return index_dir_lib.EmbeddedCatalog(
        embeddings=embeddings,
        item_ids=item_ids,
        paths=paths,
        model_identity=json.loads(identities.pop()),
    )


def read_skipped(shard_dir: str) -> list[tuple[str, str]]:
    """`(path, reason)` of every file the shards under `shard_dir` skipped,
    in shard order (shards written without the list count as none)."""
    paths = sorted(glob.glob(os.path.join(shard_dir, "shard-*-of-*.npz")))
    skipped = []
    for path in paths:
        with np.load(path) as shard:
            if "skipped" in shard:
                skipped.extend((str(p), str(r)) for p, r in shard["skipped"])
    return skipped
