"""Peak memory of indexing a folder that holds one 12000 x 12000 image.

  python -m bench.decode_memory [--out_dir=out/bench_decode_memory]

The query path decodes every file with `decode.read_for_model` (the image
contract training uses: a huge JPEG is decoded at a reduced DCT scale and
sent to the model at most `MODEL_INPUT_MAX_SIDE` pixels on a side). This
bench measures, each in its own process and side by side in one run:

- decoding the huge file the way the SavedModel decodes bytes it is sent
  (`tf.io.decode_image`, full size), which is what indexing did before;
- `decode.read_for_model` on the same file;
- `python -m beau_tf.index` on a folder of small images, with and without the
  huge image in it (an untrained EfficientNet-Lite0 export at 224 px).

Writes bench/results/decode_memory.json: peak resident memory (max RSS) per
row and each row's ratio to the small-folder indexing run. Figures:
bench/RESULTS.md ("Index").
"""

import os
import shutil
import subprocess
import sys

from absl import flags
from PIL import Image

from bench import harness

_OUT_DIR = flags.DEFINE_string(
    "out_dir", None, "Working folder (default: a temporary one, removed)."
)
_SMALL_IMAGES = flags.DEFINE_integer(
    "small_images", 16, "Ordinary 640 x 480 photos in the folder."
)
_HUGE_SIDE = flags.DEFINE_integer(
    "huge_side", 12000, "Side of the huge square image, px."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 224, "Image size of the exported model."
)

SMOKE = {"small_images": 2, "huge_side": 2000, "image_size": 64}


def _peak_rss_mb(command: list[str]) -> float:
    """Runs `command` in a child process; its peak RSS in MiB."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:])\n"
        "if done.returncode: sys.exit(done.returncode)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *command],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{result.stderr[-3000:]}"
        )
    return int(result.stdout.split()[-1]) / 1024.0  # KiB -> MiB


def _write_folders(root: str, side: int) -> tuple[str, str, str]:
    """Small photos; the same plus a huge JPEG; the same plus a huge PNG."""
    small = harness.write_photos(
        os.path.join(root, "small"), _SMALL_IMAGES.value
    )
    huge = Image.new("RGB", (side, side), (240, 240, 240))
    huge.paste(
        (200, 30, 30), (side // 4, side // 4, 3 * side // 4, 3 * side // 4)
    )
    folders = []
    for extension, options in (("jpg", {"quality": 90}), ("png", {})):
        folder = os.path.join(root, f"with_huge_{extension}")
        shutil.copytree(small, folder)
        huge.save(os.path.join(folder, f"huge.{extension}"), **options)
        folders.append(folder)
    return small, folders[0], folders[1]


def main(argv):
    del argv
    root = _OUT_DIR.value or harness.work_dir()
    os.makedirs(root, exist_ok=True)
    side, photos = _HUGE_SIDE.value, _SMALL_IMAGES.value
    small, with_jpg, with_png = _write_folders(
        os.path.join(root, "images"), side
    )
    model = harness.export_untrained(
        os.path.join(root, "exported"), image_size=_IMAGE_SIZE.value
    )
    huge_jpg = os.path.join(with_jpg, "huge.jpg")

    def index(folder: str, name: str) -> list[str]:
        return harness.module_command(
            "beau_tf.index",
            f"--model={model}",
            f"--catalog={folder}",
            f"--index_dir={os.path.join(root, 'indexes', name)}",
        )

    runs = [
        (
            f"tf.io.decode_image of the {side}² JPEG (full size)",
            [
                sys.executable,
                "-c",
                "import sys, tensorflow as tf; "
                "tf.io.decode_image(tf.io.read_file(sys.argv[1]), channels=3)",
                huge_jpg,
            ],
        ),
        (
            f"decode.read_for_model of the {side}² JPEG",
            [
                sys.executable,
                "-c",
                "import sys; from beau_tf.data import decode; "
                "decode.read_for_model(sys.argv[1])",
                huge_jpg,
            ],
        ),
        (f"index {photos} photos", index(small, "small")),
        (f"index the same + one {side}² JPEG", index(with_jpg, "jpg")),
        (f"index the same + one {side}² PNG", index(with_png, "png")),
    ]
    peaks = [(label, _peak_rss_mb(command)) for label, command in runs]
    baseline = peaks[2][1]
    rows = [
        {
            "run": label,
            "peak RSS (MiB)": peak,
            f"vs indexing {photos} photos": peak / baseline,
        }
        for label, peak in peaks
    ]
    harness.print_table(rows)
    harness.write_results(
        rows,
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
