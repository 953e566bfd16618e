"""Peak memory of indexing a folder that holds one 12000 x 12000 image.

The query path decodes every file with `decode.read_for_model` (the image
contract training uses: a huge JPEG is decoded at a reduced DCT scale and
sent to the model at most `MODEL_INPUT_MAX_SIDE` pixels on a side). This
bench measures, each in its own process and side by side in one run:

- decoding the huge file the way the SavedModel decodes bytes it is sent
  (`tf.io.decode_image`, full size), which is what indexing did before;
- `decode.read_for_model` on the same file;
- `python -m beau_tf.index` on a folder of small images, with and without the
  huge image in it (an untrained EfficientNet-Lite0 export at 224 px).

It prints peak resident memory (max RSS) per row and each row's ratio to the
small-folder indexing run.

    python bench/decode_memory.py [--out_dir=out/bench_decode_memory]
"""

import os
import shutil
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
import numpy as np
from PIL import Image

_OUT_DIR = flags.DEFINE_string(
    "out_dir", None, "Working folder (default: a temporary one, removed)."
)
_SMALL_IMAGES = flags.DEFINE_integer(
    "small_images", 16, "Ordinary 640 x 480 photos in the folder."
)

_HUGE_SIDE = 12000


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


def _write_folders(root: str) -> tuple[str, str, str]:
    """Small photos; the same plus a huge JPEG; the same plus a huge PNG."""
    rng = np.random.default_rng(0)
    small = os.path.join(root, "small")
    os.makedirs(small)
    for number in range(_SMALL_IMAGES.value):
        pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(small, f"p{number:03d}.jpg"))
    huge = Image.new("RGB", (_HUGE_SIDE, _HUGE_SIDE), (240, 240, 240))
    huge.paste((200, 30, 30), (3000, 3000, 9000, 9000))
    folders = []
    for extension, options in (("jpg", {"quality": 90}), ("png", {})):
        folder = os.path.join(root, f"with_huge_{extension}")
        shutil.copytree(small, folder)
        huge.save(os.path.join(folder, f"huge.{extension}"), **options)
        folders.append(folder)
    return small, folders[0], folders[1]


def main(argv):
    del argv
    root = _OUT_DIR.value or tempfile.mkdtemp(prefix="beau_tf_decode_memory_")
    os.makedirs(root, exist_ok=True)
    python = sys.executable
    small, with_jpg, with_png = _write_folders(os.path.join(root, "images"))
    export_dir = os.path.join(root, "exported")
    subprocess.run(
        [
            python,
            "-m",
            "beau_tf.export",
            "--backbones=efficientnet_lite0",
            "--image_size=224",
            f"--export_dir={export_dir}",
        ],
        check=True,
        capture_output=True,
    )
    model = os.path.join(export_dir, "beau_tf", "1")
    huge_jpg = os.path.join(with_jpg, "huge.jpg")

    def index(folder: str, name: str) -> list[str]:
        return [
            python,
            "-m",
            "beau_tf.index",
            f"--model={model}",
            f"--catalog={folder}",
            f"--index_dir={os.path.join(root, 'indexes', name)}",
        ]

    rows = [
        (
            "tf.io.decode_image of the 12000² JPEG (full size)",
            [
                python,
                "-c",
                "import sys, tensorflow as tf; "
                "tf.io.decode_image(tf.io.read_file(sys.argv[1]), channels=3)",
                huge_jpg,
            ],
        ),
        (
            "decode.read_for_model of the 12000² JPEG",
            [
                python,
                "-c",
                "import sys; from beau_tf.data import decode; "
                "decode.read_for_model(sys.argv[1])",
                huge_jpg,
            ],
        ),
        (f"index {_SMALL_IMAGES.value} photos", index(small, "small")),
        ("index the same + one 12000² JPEG", index(with_jpg, "jpg")),
        ("index the same + one 12000² PNG", index(with_png, "png")),
    ]
    peaks = [(label, _peak_rss_mb(command)) for label, command in rows]
    baseline = peaks[2][1]
    print(
        f"| run | peak RSS (MiB) | vs indexing {_SMALL_IMAGES.value} photos |"
    )
    print("|---|---:|---:|")
    for label, peak in peaks:
        print(f"| {label} | {peak:.0f} | {peak / baseline:.2f} |")
    if not _OUT_DIR.value:
        shutil.rmtree(root)


if __name__ == "__main__":
    app.run(main)
