r"""Embedding a catalogue on Apache Beam, then one ScaNN index from it.

  python3.11 -m venv .venv-beam && .venv-beam/bin/pip install -e '.[beam]'
  python -m beau_tf.index --model=exported/beau_tf/1 --catalog=catalog.csv \
      --index_dir=indexes/v1 --runner=DirectRunner \
      -- --direct_num_workers=2 --direct_running_mode=multi_processing

`--runner` picks the Beam runner (DirectRunner, DataflowRunner, FlinkRunner,
SparkRunner, ...); everything after `--` is handed to Beam unchanged as its
pipeline options (absl leaves arguments after `--` alone), and an option
Beam does not know is refused before any work, as absl refuses an unknown
flag. Without `--runner` the catalogue is embedded in this process
(`beau_tf.retrieval.shards`), as before.

The pipeline, for N catalogue items in S contiguous shards (about
`ITEMS_PER_SHARD` items each):

  Create((shard, row, item_id, path))            the listed catalogue
  -> ParDo(_ReadImage)      decode.read_for_model: the one image contract
  -> BatchElements          batch_size images per model call
  -> ParDo(_EmbedBatch)     the SavedModel, loaded once per worker (setup)
  -> GroupByKey(shard)
  -> ParDo(_WriteShard)     shards.save_shard: shard-0000i-of-0000S.npz

The driver then joins the shards in order (`shards.merge_shards`, so the
rows come back in catalogue order whatever order the workers finished in)
and `python -m beau_tf.index` builds the one ScaNN index from them with
`index_dir.build_and_save`, exactly as for a locally embedded catalogue: the
index is the same, embedding for embedding. A file that cannot be used is
skipped, as locally: workers count them in Beam counters
(`beau_tf/images_embedded`, `beau_tf/images_skipped`), each shard lists its
skipped files with the reason, and the driver names them all at the end.

Where the files live: every worker opens the model, the catalogue images and
`--shard_dir` by path, so on a cluster they must be on storage all workers
share (a network file system, or a bucket mounted on every worker; gs://
URLs are not read). Without `--shard_dir` the shards go to a temporary folder
on this machine, which suits the DirectRunner and a local Flink or Spark.
Workers need beau_tf itself too (on Dataflow: `-- --setup_file=./setup.py`).
The listed catalogue travels inside the pipeline (`beam.Create`), a few
hundred bytes an item: comfortable to a few million items.

Beyond one machine's index (not built): the shards are already the unit.
A partitioned index would build one ScaNN index per shard group (the last
step made a ParDo over groups of shards instead of one `build_and_save` on
the driver), each a complete index folder with its own manifest naming the
same model, plus a small partition manifest listing them. A query would be
embedded once, sent to every partition (fan-out), each would answer its
top-k with scores, and the caller would merge them by score into the global
top-k; recall is unchanged when each partition searches as deeply as the
single index would. Until a catalogue outgrows one machine's memory (tens of
millions of 256-d float32 rows) the single index is simpler and faster.
"""

import dataclasses
import logging as std_logging
import os
import tempfile
from collections.abc import Iterable, Sequence

from absl import logging
import apache_beam as beam
from apache_beam.metrics import metric as beam_metric
from apache_beam.metrics import Metrics
from apache_beam.options import pipeline_options as beam_options
import numpy as np

from beau_tf.common import cli
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import decode
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import shards
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib

ITEMS_PER_SHARD = 10_000
METRICS_NAMESPACE = "beau_tf"
EMBEDDED_COUNTER = "images_embedded"
SKIPPED_COUNTER = "images_skipped"


@dataclasses.dataclass(frozen=True)
class _Item:
    """One catalogue item on its way through the pipeline."""

    shard: int
    row: int  # index in the catalogue's (sorted) order
    item_id: str
    path: str


@dataclasses.dataclass(frozen=True)
class _Image:
    """A read item: the encoded image, or why it cannot be used."""

    item: _Item
    data: bytes | None
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class _Row:
    """An embedded item, or a skipped one with the reason."""

    item: _Item
    embedding: np.ndarray | None  # (D,) float32
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class BeamEmbedding:
    """What the pipeline made of a catalogue.

    Attributes:
      embedded: the usable items, in catalogue order.
      skipped: `(path, reason)` of every file skipped, in catalogue order.
      counters: the workers' Beam counters, summed (`EMBEDDED_COUNTER`,
        `SKIPPED_COUNTER`).
    """

    embedded: index_dir_lib.EmbeddedCatalog
    skipped: list[tuple[str, str]]
    counters: dict[str, int]


def quiet_driver_logs() -> None:
    """Shows Beam's own logs in this process from WARNING up: under absl
    every INFO line would show (the Prism download attempt, gRPC ports...)."""
    std_logging.getLogger("apache_beam").setLevel(std_logging.WARNING)


def pipeline_options(
    runner: str, beam_args: Sequence[str]
) -> beam_options.PipelineOptions:
    """Beam's options for `runner`, from command-line style arguments.

    Args:
      runner: a Beam runner name, e.g. "DirectRunner" or "DataflowRunner".
      beam_args: Beam options, e.g. ["--direct_num_workers=2"].

    Raises:
      ValueError: an option no Beam options class knows (Beam itself would
        only warn and drop it), or `--runner` among `beam_args`.
    """
    options = beam_options.PipelineOptions(
        list(beam_args),
        runner=runner,
        # Workers log their every bundle at INFO; a given level wins.
        **_unless_given(beam_args, default_sdk_harness_log_level="WARNING"),
    )
    known = options.get_all_options()
    unknown = sorted(
        set(options.get_all_options(retain_unknown_options=True)) - set(known)
    )
    if unknown:
        raise ValueError(
            f"Apache Beam does not know the option(s) "
            f"{', '.join('--' + name for name in unknown)} (after --); see "
            "python -m apache_beam.examples.wordcount --help for Beam's "
            "options."
        )
    if any(arg.split("=")[0] == "--runner" for arg in beam_args):
        raise ValueError(
            "--runner is given after --; pass it once, before --, as "
            "python -m beau_tf.index's own flag."
        )
    return options


def embed_catalog(
    saved_model_dir: str,
    model_identity: dict,
    items: Sequence[catalog_lib.CatalogItem],
    options: beam_options.PipelineOptions,
    shard_dir: str | None = None,
    batch_size: int = 32,
    items_per_shard: int = ITEMS_PER_SHARD,
) -> BeamEmbedding:
    """Embeds a catalogue with a Beam pipeline and joins its shards.

    Args:
      saved_model_dir: the exported version folder every worker loads.
      model_identity: `contract.model_identity(saved_model_dir)`.
      items: the catalogue (`catalog.list_catalog`).
      options: from `pipeline_options`.
      shard_dir: where the workers write the shards, kept afterwards (an
        empty or missing folder they can all reach); None: a temporary
        folder on this machine, removed afterwards.
      batch_size: images per model call.
      items_per_shard: about how many items each shard holds.

    Returns:
      The embedded catalogue, the skipped files and the workers' counters.

    Raises:
      FileExistsError: `shard_dir` already holds shards.
      ValueError: no image could be embedded, a bad `batch_size`, or the
        shards do not account for every item.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; at least 1 expected.")
    if shard_dir is None:
        with tempfile.TemporaryDirectory(prefix="beau_tf-shards-") as folder:
            return embed_catalog(
                saved_model_dir,
                model_identity,
                items,
                options,
                folder,
                batch_size,
                items_per_shard,
            )
    _check_no_shards(shard_dir)
    num_shards = max(1, min(len(items), -(-len(items) // items_per_shard)))
    logging.info(
        "Embedding %d images in %d shard(s) on %s.",
        len(items),
        num_shards,
        options.get_all_options()["runner"],
    )
    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | "ListCatalogue" >> beam.Create(_keyed_items(items, num_shards))
            | "ReadImages" >> beam.ParDo(_ReadImage())
            | "Batch"
            >> beam.BatchElements(
                min_batch_size=batch_size, max_batch_size=batch_size
            )
            | "Embed"
            >> beam.ParDo(_EmbedBatch(saved_model_dir, model_identity))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards"
            >> beam.ParDo(_WriteShard(shard_dir, num_shards, model_identity))
        )
    counters = _counters(pipeline.result)
    embedded = shards.merge_shards(shard_dir)
    skipped = shards.read_skipped(shard_dir)
    if len(embedded.item_ids) + len(skipped) != len(items):
        raise ValueError(
            f"The shards under {shard_dir} hold {len(embedded.item_ids)} "
            f"embedded and {len(skipped)} skipped images of {len(items)}; "
            "rerun with an empty --shard_dir."
        )
    _report(skipped, len(items), counters)
    if not embedded.item_ids:
        raise ValueError(f"None of the {len(items)} images could be embedded.")
    return BeamEmbedding(embedded, skipped, counters)


def _keyed_items(
    items: Sequence[catalog_lib.CatalogItem], num_shards: int
) -> list[_Item]:
    keyed = []
    for shard in range(num_shards):
        start, stop = shards.shard_bounds(len(items), num_shards, shard)
        keyed.extend(
            _Item(shard, row, items[row].item_id, items[row].path)
            for row in range(start, stop)
        )
    return keyed


class _ReadImage(beam.DoFn):
    """`decode.read_for_model`, the bytes every stage sends the model."""

    def process(self, item: _Item) -> Iterable[_Image]:
        try:
            yield _Image(item, decode.read_for_model(item.path))
        except (decode.ImageDecodeError, OSError) as error:
            yield _Image(item, None, str(error))


class _EmbedBatch(beam.DoFn):
    """Embeds batches of read images with the SavedModel, loaded once per
    worker; yields `(shard, _Row)` for every image, usable or not."""

    def __init__(self, saved_model_dir: str, model_identity: dict):
        self.saved_model_dir = saved_model_dir
        self.model_fingerprint = model_identity.get("model_fingerprint")
        self.embedded = Metrics.counter(METRICS_NAMESPACE, EMBEDDED_COUNTER)
        self.skipped = Metrics.counter(METRICS_NAMESPACE, SKIPPED_COUNTER)
        self.embed_fn = None

    def setup(self):
        cli.probe_gpus_quietly()  # as in the CLIs: no cuInit line per worker
        self.embed_fn = embedding_lib.load_embed_fn(self.saved_model_dir)

    def process(self, batch: list[_Image]) -> Iterable[tuple[int, _Row]]:
        readable = [image for image in batch if image.data is not None]
        rows = {}
        if readable:
            rows = self._embed(readable)
        for image in batch:
            row = rows.get(image.item.row) or _Row(
                image.item, None, image.problem
            )
            (self.skipped if row.embedding is None else self.embedded).inc()
            yield row.item.shard, row

    def _embed(self, readable: list[_Image]) -> dict[int, _Row]:
        answer = self.embed_fn([image.data for image in readable])
        if self.model_fingerprint:
            self._check_model(answer.model_fingerprint)
        rows = {}
        # strict: a signature answering fewer rows than images is a bug.
        for image, embedding, status in zip(
            readable, answer.embeddings, answer.statuses, strict=True
        ):
            if status == contract.STATUS_OK:
                rows[image.item.row] = _Row(
                    image.item, np.asarray(embedding, np.float32)
                )
            else:
                rows[image.item.row] = _Row(
                    image.item, None, f"{image.item.path} is {status}"
                )
        return rows

    def _check_model(self, answered: str) -> None:
        if answered != self.model_fingerprint:
            raise ValueError(
                f"A worker's {self.saved_model_dir} answers with model "
                f"fingerprint {answered}, not {self.model_fingerprint}: "
                "every worker must load the same exported version."
            )


class _WriteShard(beam.DoFn):
    """Writes one shard's rows, sorted into catalogue order."""

    def __init__(self, shard_dir: str, num_shards: int, model_identity: dict):
        self.shard_dir = shard_dir
        self.num_shards = num_shards
        self.model_identity = model_identity

    def process(self, keyed: tuple[int, Iterable[_Row]]) -> Iterable[str]:
        shard, rows = keyed
        rows = sorted(rows, key=lambda row: row.item.row)
        kept = [row for row in rows if row.embedding is not None]
        dim = int(self.model_identity.get("embedding_dim", 0))
        embeddings = (
            np.stack([row.embedding for row in kept])
            if kept
            else np.zeros((0, dim), np.float32)
        )
        embedded = index_dir_lib.EmbeddedCatalog(
            embeddings=embeddings,
            item_ids=[row.item.item_id for row in kept],
            paths=[row.item.path for row in kept],
            model_identity=self.model_identity,
        )
        skipped = [
            (row.item.path, row.problem)
            for row in rows
            if row.embedding is None
        ]
        yield shards.save_shard(
            embedded, self.shard_dir, self.num_shards, shard, skipped
        )


def _unless_given(beam_args: Sequence[str], **defaults) -> dict:
    given = {arg.split("=")[0].lstrip("-") for arg in beam_args}
    return {
        name: value for name, value in defaults.items() if name not in given
    }


def _check_no_shards(shard_dir: str) -> None:
    if os.path.isdir(shard_dir) and any(
        name.startswith("shard-") and name.endswith(".npz")
        for name in os.listdir(shard_dir)
    ):
        raise FileExistsError(
            f"--shard_dir={shard_dir} already holds shards; pass an empty "
            "folder (or join those with --merge_shards)."
        )


def _counters(result) -> dict[str, int]:
    """The workers' counters, summed over steps (committed where the runner
    reports it, else attempted)."""
    query = result.metrics().query(
        beam_metric.MetricsFilter().with_namespace(METRICS_NAMESPACE)
    )
    counters = {EMBEDDED_COUNTER: 0, SKIPPED_COUNTER: 0}
    for counter in query["counters"]:
        value = counter.committed
        if value is None:
            value = counter.attempted
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + int(value or 0)
    return counters


def _report(
    skipped: Sequence[tuple[str, str]], total: int, counters: dict[str, int]
) -> None:
    """Names the skipped files, as the local path does."""
    for _, reason in skipped:
        logging.warning("Skipped: %s", reason)
    if skipped:
        logging.warning("%d of %d images skipped.", len(skipped), total)
    logging.info(
        "Beam counters: %d images embedded, %d skipped.",
        counters.get(EMBEDDED_COUNTER, 0),
        counters.get(SKIPPED_COUNTER, 0),
    )
