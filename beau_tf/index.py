r"""Embeds a catalogue through an exported model and builds its search index.

  python -m beau_tf.index --model=exported/beau_tf/1 \
      --catalog=out/grocery/catalog.csv --index_dir=indexes/grocery-v1

--runtime=openvino-int8 (or openvino, openvino-bf16) embeds with a copy of
the model converted by python -m beau_tf.convert; the index then holds the
same model identity, so search may use any runtime.

A large catalogue is embedded in shards, one command per machine, then merged:

  python -m beau_tf.index --model=exported/beau_tf/1 --catalog=catalog.csv \
      --shard_dir=shards/ --num_shards=8 --shard_index=3
  python -m beau_tf.index --merge_shards=shards/ --index_dir=indexes/v1

Or on Apache Beam workers, from Beam's own environment (it pins protobuf<7,
so not the core one: python3.11 -m venv .venv-beam &&
.venv-beam/bin/pip install -e '.[beam]'); Beam's own pipeline options follow
`--`, see beau_tf.retrieval.beam_embedding:

  python -m beau_tf.index --model=exported/beau_tf/1 --catalog=catalog.csv \
      --index_dir=indexes/v1 --runner=DirectRunner \
      -- --direct_num_workers=2 --direct_running_mode=multi_processing

The index is ScaNN's by default, its configuration following the
catalogue's size (brute force when small, asymmetric hashing with reordering,
tree partitioning from ~100K items, its rescoring copy in bfloat16 from 1M);
`--target_recall=0.95` then tunes its search for that recall@10.
`--index_type=brute_force` builds an exact inner-product index in NumPy
instead (no ScaNN files, nothing to tune). A build that would not fit in this
machine's memory is refused before any work, saying what it needs; merged
shards stay on disk (memory-mapped), so a 10M x 256 catalogue builds within
24 GiB (bench/RESULTS.md, "Scale").
`--index_type=milvus --milvus_uri=http://127.0.0.1:19530` puts the
catalogue in a collection on that Milvus server (or a milvus-lite file,
`--milvus_uri=catalogue.db`), which then answers the searches; needs
pip install 'beau_tf[milvus]', see beau_tf.retrieval.milvus_index.
"""

import dataclasses
import os
import tempfile

from absl import app
from absl import flags

from beau_tf.common import cli
from beau_tf.common import files
from beau_tf.common import memory
from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import indexes
from beau_tf.retrieval import scann_index
from beau_tf.retrieval import shards
from beau_tf.serving import contract
from beau_tf.serving import runtimes

_MODEL = flags.DEFINE_string(
    "model",
    None,
    "Exported SavedModel version directory, e.g. exported/beau_tf/1.",
)
_CATALOG = flags.DEFINE_string(
    "catalog", None, "Catalogue: image folder (recursive) or CSV item_id,path."
)
_INDEX_DIR = flags.DEFINE_string(
    "index_dir", None, "Index directory to write (never overwritten)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per model call.")
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", 1, "Split the embedding into this many shards."
)
_SHARD_INDEX = flags.DEFINE_integer("shard_index", 0, "Shard to embed here.")
_SHARD_DIR = flags.DEFINE_string(
    "shard_dir", None, "Where shards are written (with --num_shards > 1)."
)
_MERGE_SHARDS = flags.DEFINE_string(
    "merge_shards", None, "Join the shards in this folder into --index_dir."
)
_TARGET_RECALL = flags.DEFINE_float(
    "target_recall",
    None,
    "Pick ScaNN's leaves searched and candidates rescored as the cheapest "
    "reaching this recall@10 on a sample of the catalogue (exact search as "
    "the oracle), e.g. 0.95; recorded in the manifest. Default: by size.",
    lower_bound=0.0,
    upper_bound=1.0,
)
_INDEX_TYPE = flags.DEFINE_enum(
    "index_type",
    indexes.DEFAULT_KIND,
    sorted(indexes.INDEX_TYPES),
    "scann: approximate search, configured by the catalogue's size; "
    "brute_force: exact inner products in NumPy, cost linear in the "
    "catalogue; milvus: a collection on the Milvus at --milvus_uri.",
)
_MILVUS_URI = flags.DEFINE_string(
    "milvus_uri",
    None,
    "With --index_type=milvus: the server, e.g. http://127.0.0.1:19530, or "
    "a milvus-lite file ending .db. A token, if the server wants one, is "
    "read from BEAU_TF_MILVUS_TOKEN, never written.",
)
_REORDER_DTYPE = flags.DEFINE_enum(
    "reorder_dtype",
    None,
    sorted(scann_index.REORDER_DTYPES),
    "ScaNN's copy of the catalogue that rescores candidates: float32 "
    "(exact), bfloat16 (half the memory), int8 (a quarter, about -0.02 "
    "recall@10). Default: float32 below 1M items, bfloat16 from 1M.",
)
_RUNTIME = flags.DEFINE_enum(
    "runtime", runtimes.TENSORFLOW, runtimes.NAMES, runtimes.FLAG_HELP
)
_RUNNER = flags.DEFINE_string(
    "runner",
    None,
    "Embed on Apache Beam with this runner (DirectRunner, DataflowRunner, "
    "FlinkRunner, SparkRunner...), Beam's options after --; shards go to "
    "--shard_dir if given. Needs the beam extra, in its own venv "
    "(README: .venv-beam). Default: embed here.",
)


def main(argv):
    beam_args = argv[1:]  # what follows --
    if beam_args and not _RUNNER.value:
        raise app.UsageError(f"Unexpected arguments: {beam_args}")
    if _TARGET_RECALL.value is not None and _INDEX_TYPE.value != "scann":
        raise app.UsageError(
            "--target_recall tunes ScaNN's search; "
            f"--index_type={_INDEX_TYPE.value} has nothing to tune."
        )
    if _REORDER_DTYPE.value and _INDEX_TYPE.value != "scann":
        raise app.UsageError(
            f"--reorder_dtype configures ScaNN; --index_type="
            f"{_INDEX_TYPE.value} keeps no rescoring copy."
        )
    milvus_settings = _milvus_settings()
    if _MERGE_SHARDS.value:
        if not _INDEX_DIR.value:
            raise app.UsageError("--merge_shards needs --index_dir.")
        index_dir_lib.check_free(_INDEX_DIR.value)
        _merge_and_build(_MERGE_SHARDS.value, _INDEX_DIR.value, milvus_settings)
        return
    if not (_MODEL.value and _CATALOG.value):
        raise app.UsageError("--model and --catalog are required.")
    sharded = _NUM_SHARDS.value > 1
    if sharded and _RUNNER.value:
        raise app.UsageError("--runner shards by itself; drop --num_shards.")
    if _RUNNER.value and _RUNTIME.value != runtimes.TENSORFLOW:
        raise app.UsageError(
            "--runtime applies to embedding here; Beam's workers run the "
            "SavedModel."
        )
    if sharded and not _SHARD_DIR.value:
        raise app.UsageError("--num_shards > 1 needs --shard_dir.")
    if sharded:
        files.check_writable(_SHARD_DIR.value, "--shard_dir", folder=True)
    if not sharded and not _INDEX_DIR.value:
        raise app.UsageError("--index_dir is required.")
    beam_embedding = _beam_embedding() if _RUNNER.value else None
    items = catalog_lib.list_catalog(_CATALOG.value)
    identity = contract.model_identity(_MODEL.value)
    if not sharded:
        # Before hours of embedding: a taken folder, or a build that cannot
        # fit in memory.
        index_dir_lib.check_free(_INDEX_DIR.value)
        _index_settings(len(items), identity["embedding_dim"], in_memory=True)
    if _RUNNER.value:
        embedded = _embed_on_beam(beam_embedding, beam_args, identity, items)
    else:
        embedded = shards.embed_catalog_shard(
            _MODEL.value,
            identity,
            items,
            num_shards=_NUM_SHARDS.value,
            shard_index=_SHARD_INDEX.value,
            batch_size=_BATCH_SIZE.value,
            runtime=_RUNTIME.value,
        )
    if sharded:
        shards.save_shard(
            embedded, _SHARD_DIR.value, _NUM_SHARDS.value, _SHARD_INDEX.value
        )
    else:
        _build(embedded, _INDEX_DIR.value, True, milvus_settings)


def _index_settings(
    num_items: int, dim: int, in_memory: bool, milvus_settings=None
):
    """The index type's settings: ScaNN's for this catalogue (by size, with
    --reorder_dtype), checked to fit in memory; Milvus's; None for brute
    force.

    Raises:
        ValueError: the build would not fit, saying what it needs.
    """
    if _INDEX_TYPE.value == "milvus":
        return milvus_settings
    if _INDEX_TYPE.value != "scann":
        return None
    params = scann_index.choose_index_params(num_items, dim)
    if _REORDER_DTYPE.value:
        params = dataclasses.replace(params, reorder_dtype=_REORDER_DTYPE.value)
    scann_index.check_fits(
        num_items, dim, params, memory.available_bytes(), in_memory
    )
    return params


def _build(
    embedded: index_dir_lib.EmbeddedCatalog,
    index_dir: str,
    in_memory: bool,
    milvus_settings=None,
) -> None:
    num_items, dim = embedded.embeddings.shape
    index_dir_lib.build_and_save(
        embedded,
        index_dir,
        settings=_index_settings(num_items, dim, in_memory, milvus_settings),
        target_recall=_TARGET_RECALL.value,
        index_type=_INDEX_TYPE.value,
    )


def _merge_and_build(
    shard_dir: str, index_dir: str, milvus_settings=None
) -> None:
    """Joins the shards into a memory-mapped file beside the index folder
    (never two copies of the catalogue in memory), then builds."""
    parent = os.path.dirname(os.path.abspath(index_dir))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".merging-") as scratch:
        embedded = shards.merge_shards(
            shard_dir, os.path.join(scratch, "embeddings.npy")
        )
        _build(embedded, index_dir, False, milvus_settings)
        del embedded  # the memory map, before its file is removed


def _milvus_settings():
    """Milvus's settings from the flags (the server checked before any
    work), or None for the other index types."""
    if _INDEX_TYPE.value != "milvus":
        if _MILVUS_URI.value:
            raise app.UsageError("--milvus_uri needs --index_type=milvus.")
        return None
    if not _MILVUS_URI.value:
        raise app.UsageError(
            "--index_type=milvus needs --milvus_uri, e.g. "
            "http://127.0.0.1:19530 or catalogue.db (milvus-lite)."
        )
    # Imported here: pymilvus is the optional extra `milvus`; without it
    # this raises a one-line error saying how to install it.
    from beau_tf.retrieval import milvus_index

    settings = milvus_index.MilvusSettings(uri=_MILVUS_URI.value)
    milvus_index.check_server(settings.uri)  # before hours of embedding
    return settings


def _beam_embedding():
    """`beau_tf.retrieval.beam_embedding`, or a one-line error saying how
    to install Apache Beam."""
    try:
        # Imported here: the core install has no Apache Beam.
        from beau_tf.retrieval import beam_embedding
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("apache_beam"):
            raise
        raise app.UsageError(
            f"--runner={_RUNNER.value} needs Apache Beam, which is not "
            "installed here; it pins protobuf<7, so install it in a venv "
            "of its own: python3.11 -m venv .venv-beam && "
            ".venv-beam/bin/pip install -e '.[beam]', then run "
            ".venv-beam/bin/python -m beau_tf.index ..."
        ) from None
    return beam_embedding


def _embed_on_beam(
    beam_embedding, beam_args: list[str], identity: dict, items: list
) -> index_dir_lib.EmbeddedCatalog:
    """The catalogue embedded by a Beam pipeline on `--runner`."""
    beam_embedding.quiet_driver_logs()
    options = beam_embedding.pipeline_options(_RUNNER.value, beam_args)
    if _SHARD_DIR.value:
        files.check_writable(_SHARD_DIR.value, "--shard_dir", folder=True)
    return beam_embedding.embed_catalog(
        _MODEL.value,
        identity,
        items,
        options,
        shard_dir=_SHARD_DIR.value,
        batch_size=_BATCH_SIZE.value,
    ).embedded


if __name__ == "__main__":
    cli.run(main)
