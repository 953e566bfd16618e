r"""Catalogue embedding on Apache Beam (1 and 2 workers) vs. the local path.

  .venv-beam/bin/python bench/beam_embedding.py [--images=300] [--rounds=1]

Needs the beam extra (`pip install -e '.[beam]'`, kept in .venv-beam).
Exports an untrained EfficientNet-Lite0 at 224 px (or takes --model), writes
--images synthetic 640 x 480 JPEG photos, and embeds them side by side, in
rounds of:

  local   `shards.embed_catalog_shard` in this process (what
          `python -m beau_tf.index` does without --runner);
  beam-1  `beam_embedding.embed_catalog` on the DirectRunner, one worker
          process (`--direct_running_mode=multi_processing`);
  beam-2  the same with two worker processes.

Each time covers everything a user waits for: loading the model (once per
Beam worker, with the worker's start) and reading, decoding and embedding
every image; not listing the catalogue or building the index (the same for
all three). A second, --small_images catalogue measures the fixed cost (the
start-up), and the difference of the two the steady rate. Prints a Markdown
table: images/s end to end and steady, each with its ratio to local, and the
largest difference between a Beam embedding and the local one.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import beam_embedding
from beau_tf.retrieval import shards
from beau_tf.serving import contract

_MODEL = flags.DEFINE_string(
    "model", None, "An exported version folder (default: export Lite0)."
)
_IMAGES = flags.DEFINE_integer("images", 300, "Photos in the catalogue.")
_SMALL_IMAGES = flags.DEFINE_integer(
    "small_images", 8, "Photos in the catalogue that measures start-up."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per model call.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Alternating rounds (median).")


def _write_photos(folder: str, count: int) -> str:
    """`count` 640 x 480 JPEGs: smooth gradients plus noise, like photos."""
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    for number in range(count):
        base = rng.uniform(0, 255, 3) * (x[..., None] / 640) + rng.uniform(
            0, 255, 3
        ) * (y[..., None] / 480)
        noisy = base / 2 + rng.normal(0, 12, (480, 640, 3))
        pixels = np.clip(noisy, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(
            os.path.join(folder, f"p{number:04d}.jpg"), quality=90
        )
    return folder


def _export(root: str) -> str:
    export_dir = os.path.join(root, "exported")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "beau_tf.export",
            "--backbones=efficientnet_lite0",
            "--image_size=224",
            f"--export_dir={export_dir}",
        ],
        check=True,
        capture_output=True,
    )
    return os.path.join(export_dir, "beau_tf", "1")


def _timed(embed) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    embeddings = embed()
    return time.perf_counter() - start, embeddings


def main(argv):
    del argv
    beam_embedding.quiet_driver_logs()
    with tempfile.TemporaryDirectory(prefix="beau_tf_bench_beam_") as root:
        model = _MODEL.value or _export(root)
        identity = contract.model_identity(model)
        catalogues = {
            size: catalog_lib.list_catalog(
                _write_photos(os.path.join(root, f"photos{size}"), size)
            )
            for size in (_IMAGES.value, _SMALL_IMAGES.value)
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
                model,
                identity,
                items,
                options,
                batch_size=_BATCH_SIZE.value,
            ).embedded.embeddings

        runs = {"local": local, "beam-1": beam(1), "beam-2": beam(2)}
        seconds = {(name, size): [] for name in runs for size in catalogues}
        outputs = {}
        for _ in range(_ROUNDS.value):
            for name, run in runs.items():
                for size, items in catalogues.items():
                    took, outputs[name, size] = _timed(lambda: run(items))
                    seconds[name, size].append(took)
    big, small = _IMAGES.value, _SMALL_IMAGES.value
    wall = {key: statistics.median(times) for key, times in seconds.items()}
    rate = {name: big / wall[name, big] for name in runs}
    steady = {
        name: (big - small) / (wall[name, big] - wall[name, small])
        for name in runs
    }
    print(
        f"| path ({big} photos, batch {_BATCH_SIZE.value}) | wall s | "
        f"images/s | vs local | start-up s ({small} photos) | "
        "steady images/s | vs local |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in runs:
        print(
            f"| {name} | {wall[name, big]:.1f} | {rate[name]:.1f} | "
            f"{rate[name] / rate['local']:.2f} | {wall[name, small]:.1f} | "
            f"{steady[name]:.1f} | {steady[name] / steady['local']:.2f} |"
        )
    for name in ("beam-1", "beam-2"):
        difference = np.abs(outputs[name, big] - outputs["local", big]).max()
        print(f"\n{name}: largest |embedding - local| = {difference:.2e}")


if __name__ == "__main__":
    app.run(main)
