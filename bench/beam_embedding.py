"""Catalogue embedding on Apache Beam (1 and 2 workers) vs. the local path.

  .venv-beam/bin/python -m bench.beam_embedding [--images=300] [--rounds=1]

Needs the beam extra (`pip install -e '.[beam]'`, kept in .venv-beam); says
it is skipped without it. Exports an untrained EfficientNet-Lite0 at 224 px
(or takes --model), writes --images synthetic 640 x 480 JPEG photos, and
embeds them side by side, in rounds of:

  local   `shards.embed_catalog_shard` in this process (what
          `python -m beau_tf.index` does without --runner);
  beam-1  `beam_embedding.embed_catalog` on the DirectRunner, one worker
          process (`--direct_running_mode=multi_processing`);
  beam-2  the same with two worker processes.

Each time covers everything a user waits for: loading the model (once per
Beam worker, with the worker's start) and reading, decoding and embedding
every image; not listing the catalogue or building the index (the same for
all three). A second, --small_images catalogue measures the fixed cost (the
start-up), and the difference of the two the steady rate. Writes
bench/results/beam_embedding.json: images/s end to end and steady, each with
its ratio to local, and the largest difference between a Beam embedding and
the local one. Figures: bench/RESULTS.md ("Scale").
"""

import importlib.util
import os

from absl import flags
import numpy as np

from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import shards
from beau_tf.serving import contract
from bench import harness

_MODEL = flags.DEFINE_string(
    "model", None, "An exported version folder (default: export Lite0)."
)
_IMAGES = flags.DEFINE_integer("images", 300, "Photos in the catalogue.")
_SMALL_IMAGES = flags.DEFINE_integer(
    "small_images", 8, "Photos in the catalogue that measures start-up."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per model call.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Alternating rounds (median).")

SMOKE = {"images": 4, "small_images": 2, "batch_size": 2}


def main(argv):
    del argv
    if importlib.util.find_spec("apache_beam") is None:
        harness.skip(
            "apache_beam is not installed (the beam extra: "
            "pip install -e '.[beam]', kept in .venv-beam)"
        )
        return
    from beau_tf.retrieval import (
        beam_embedding,
    )  # pylint: disable=g-import-not-at-top

    beam_embedding.quiet_driver_logs()
    root = harness.work_dir()
    model = _MODEL.value or harness.export_untrained(
        os.path.join(root, "exported")
    )
    identity = contract.model_identity(model)
    big, small = _IMAGES.value, _SMALL_IMAGES.value
    catalogues = {
        size: catalog_lib.list_catalog(
            harness.write_photos(os.path.join(root, f"photos{size}"), size)
        )
        for size in (big, small)
    }

    def local(items):
        return shards.embed_catalog_shard(
            model, identity, items, batch_size=_BATCH_SIZE.value
        ).embeddings

    def beam(workers):
        options = beam_embedding.pipeline_options(
            "DirectRunner",
            [
                f"--direct_num_workers={workers}",
                "--direct_running_mode=multi_processing",
            ],
        )
        return lambda items: beam_embedding.embed_catalog(
            model, identity, items, options, batch_size=_BATCH_SIZE.value
        ).embedded.embeddings

    outputs = {}

    def contender(run, name, size):
        def measure():
            outputs[name, size], seconds = harness.timed(run, catalogues[size])
            return seconds

        return measure

    paths = {"local": local, "beam-1": beam(1), "beam-2": beam(2)}
    measured = harness.side_by_side(
        {
            (name, size): contender(run, name, size)
            for name, run in paths.items()
            for size in catalogues
        },
        _ROUNDS.value,
    )
    wall = {key: measured.median(key) for key in measured.values}
    rate = {name: big / wall[name, big] for name in paths}
    steady = {
        name: (big - small) / (wall[name, big] - wall[name, small])
        for name in paths
    }
    rows = [
        {
            "path": name,
            "wall s": wall[name, big],
            "images/s": rate[name],
            "vs local": rate[name] / rate["local"],
            f"start-up s ({small} photos)": wall[name, small],
            "steady images/s": steady[name],
            "steady vs local": steady[name] / steady["local"],
            "largest |embedding - local|": float(
                np.abs(outputs[name, big] - outputs["local", big]).max()
            ),
        }
        for name in paths
    ]
    harness.print_table(rows)
    harness.write_results(
        rows,
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
