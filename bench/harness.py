"""What every bench shares: running, timing side by side, results, data.

A bench is a module of this package run from the repository root,

  python -m bench.<name> [--smoke] [--results_dir=DIR] [its own flags]

whose `main` goes through `run(main, smoke=...)`. The harness gives it:

- `--smoke`: the values of the bench's `SMOKE` dict (tiny sizes, synthetic
  data) replace the defaults of the flags not given on the command line, so
  the run takes seconds and its code paths still run; results go to
  `out/bench_smoke/` instead of `bench/results/`. tests/bench runs every
  bench this way.
- `side_by_side`: contenders called in turn, round after round, so machine
  noise hits them all alike; medians and ratios of medians.
- `write_results`: `bench/results/<name>[-<variant>].json` with the command
  line, the git commit, the date, the machine and the rows.
- `export_untrained`: an untrained ImageNet backbone (or ensemble) exported
  as a SavedModel, the model most benches time or index.
- `find_grocery`: the shared GroceryStore copy, or one line saying the
  bench is skipped; `write_grocery_like`: a synthetic catalogue laid out as
  GroceryStore's `dataset/` folder, for smoke runs.
- `Service`: python -m beau_tf.serve in a child process on 127.0.0.1, for
  the service benches (serve_load, abuse).

These flags and helpers are for the bench command lines only; nothing in
beau_tf imports this package. TensorFlow is imported inside the functions
that need it, so a bench's parent process (bench.index_scale measures its
workers' memory against what is free) can stay without it.
"""

import dataclasses
import datetime
import io
import os
import pathlib
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

from absl import flags
from absl import logging
import numpy as np
from PIL import Image

from beau_tf.common import cli
from beau_tf.common import files
from beau_tf.data import catalog
from beau_tf.datasets.synthetic import catalogue as synthetic_catalogue
from beau_tf.retrieval import metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
SMOKE_RESULTS_DIR = REPO / "out" / "bench_smoke"
# The shared data folder beside the checkout (../shared/data/README.md).
GROCERY_DATASET = REPO.parent / "shared" / "data" / "grocery-store" / "dataset"
GROCERY_ICONIC = GROCERY_DATASET / "iconic-images-and-descriptions"

_SMOKE = flags.DEFINE_bool(
    "smoke",
    False,
    "Shrink the run to seconds (tiny sizes, synthetic data) to check that "
    "the bench works; its figures mean nothing. Results go to "
    "out/bench_smoke/ unless --results_dir is given.",
)
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir",
    None,
    "Where the results JSON is written (default: bench/results, or "
    "out/bench_smoke with --smoke).",
)


@dataclasses.dataclass
class _Run:
    name: str
    started: float
    work_dir: str | None = None  # made by the first `work_dir()` call


_CURRENT: _Run | None = None


def run(
    main: Callable[[list[str]], None],
    smoke: Mapping[str, object] | None = None,
) -> None:
    """Runs a bench's `main` as a command line (`beau_tf.common.cli.run`).

    Args:
      main: the bench's `main(argv)`.
      smoke: flag name -> value used with --smoke when the flag is not on
        the command line; a callable value is called with a temporary
        folder (removed at the end) and returns the value.
    """
    name = _bench_name(main)

    def main_with_harness(argv):
        global _CURRENT
        _CURRENT = _Run(name, time.perf_counter())
        try:
            if _SMOKE.value:
                _apply_smoke(smoke or {})
            main(argv)
        finally:
            if _CURRENT.work_dir:
                shutil.rmtree(_CURRENT.work_dir, ignore_errors=True)

    cli.run(main_with_harness)


def _bench_name(main) -> str:
    spec = getattr(sys.modules[main.__module__], "__spec__", None)
    if spec is None or not spec.name.startswith("bench."):
        raise SystemExit(
            "Run the benches as modules from the repository root: "
            "python -m bench.<name>."
        )
    return spec.name.rsplit(".", 1)[-1]


def _apply_smoke(values: Mapping[str, object]) -> None:
    for name, value in values.items():
        flag = flags.FLAGS[name]
        if flag.present:
            continue
        if callable(value):
            value = value(work_dir())
        # Parsing the text form handles list, enum and bool flags alike.
        text = ",".join(map(str, value)) if isinstance(value, list) else value
        flag.parse(str(text).lower() if isinstance(value, bool) else str(text))
    logging.info(
        "Smoke run: %s", " ".join(flags.FLAGS[n].serialize() for n in values)
    )


def work_dir() -> str:
    """A temporary folder for this run, removed when the run ends."""
    if _CURRENT.work_dir is None:
        _CURRENT.work_dir = tempfile.mkdtemp(prefix=f"bench_{_CURRENT.name}_")
    return _CURRENT.work_dir


def skip(reason: str) -> None:
    """Says in one line that the bench cannot run here, and why; writes no
    results (tests/bench reads this line as a skip)."""
    print(f"bench.{_CURRENT.name} skipped: {reason}", flush=True)


def timed(fn: Callable, *args, **kwargs) -> tuple[object, float]:
    """`(fn(*args, **kwargs), seconds it took)`."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def median_seconds(fn: Callable[[], object], rounds: int):
    """`(fn()'s last result, median seconds of `rounds` calls)`, after one
    untimed call (thread pools, caches)."""
    result = fn()
    seconds = []
    for _ in range(rounds):
        result, took = timed(fn)
        seconds.append(took)
    return result, statistics.median(seconds)


def rate(fn: Callable[[], object], calls: int, per_call: int = 1) -> float:
    """Items per second over `calls` calls of `fn`, each doing `per_call`."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls * per_call / (time.perf_counter() - start)


@dataclasses.dataclass(frozen=True)
class Upload:
    """One file a bench sends to the search service."""

    name: str
    data: bytes
    kind: str = "good"  # "good", or what is wrong with it


def read_query_photos(queries_csv: str) -> list[Upload]:
    """The photos a query list names (`catalog.read_queries`), in its order,
    as good uploads."""
    return [
        Upload(
            os.path.basename(query.path), pathlib.Path(query.path).read_bytes()
        )
        for query in catalog.read_queries(queries_csv)
    ]


def ms_per_query(signature, photos: Sequence[bytes]) -> float:
    """Mean milliseconds of one call of an export's signature on one encoded
    photo (batch 1, as a shopper's query arrives); reading the answer waits
    for the computation."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    start = time.perf_counter()
    for photo in photos:
        np.asarray(signature(images=tf.constant([photo]))["embedding"])
    return 1000.0 * (time.perf_counter() - start) / len(photos)


def images_per_second(signature, images: Sequence[bytes]) -> float:
    """Encoded images per second of one call of an export's signature on
    all of `images` as one batch."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    start = time.perf_counter()
    np.asarray(signature(images=tf.constant(list(images)))["embedding"])
    return len(images) / (time.perf_counter() - start)


@dataclasses.dataclass(frozen=True)
class SideBySide:
    """What each contender measured, one value per round, in round order."""

    values: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def ratio(self, name: str, baseline: str) -> float:
        """Median of `name` over median of `baseline`."""
        return self.median(name) / self.median(baseline)

    def rows(
        self, unit: str, labels: Mapping[str, str] | None = None
    ) -> list[dict]:
        """One row per contender (named by `labels` where given): its median
        and every round's value."""
        labels = labels or {}
        return [
            {
                "contender": labels.get(name, name),
                f"median {unit}": self.median(name),
                "rounds": values,
            }
            for name, values in self.values.items()
        ]


def side_by_side(
    contenders: Mapping[str, Callable[[], float]],
    rounds: int,
    warmup: bool = False,
) -> SideBySide:
    """Calls each contender in turn, `rounds` times over.

    Alternating, rather than running one contender's rounds and then the
    next's, spreads the machine's changing load over all of them, so their
    ratios hold even where the absolute values move.

    Args:
      contenders: name -> a function that measures once (a rate, seconds).
      rounds: how many times each is called.
      warmup: call each once first, unrecorded (tracing, caches).
    """
    if warmup:
        for measure in contenders.values():
            measure()
    values = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, measure in contenders.items():
            values[name].append(measure())
    return SideBySide(values)


def print_table(rows: Sequence[Mapping], columns: Sequence[str] = ()) -> None:
    """Prints rows as a Markdown table (all keys of the first row unless
    `columns` names them)."""
    columns = list(columns or rows[0])
    shown = [
        {
            key: (
                ", ".join(f"{v:.4g}" for v in value)
                if isinstance(value, list)
                else value
            )
            for key, value in row.items()
        }
        for row in rows
    ]
    print(metrics.format_table(shown, columns, markdown=True), flush=True)


def results_path(variant: str | None = None) -> str:
    """Where `write_results` writes this run's rows."""
    folder = _RESULTS_DIR.value or (
        SMOKE_RESULTS_DIR if _SMOKE.value else RESULTS_DIR
    )
    name = _CURRENT.name + (f"-{variant}" if variant else "")
    return os.path.join(folder, f"{name}.json")


def write_results(
    rows: Sequence[Mapping], variant: str | None = None, **extra
) -> str:
    """Writes this run's rows, with how and where they were measured.

    The record holds the command line, every flag of the bench (defaults
    included), the commit, the date, the machine and the run's seconds.

    Args:
      rows: one dict per measured row (JSON-serialisable values).
      variant: names a file of its own for a variant of the bench (one
        backbone, one data set), `<name>-<variant>.json`.
      **extra: more top-level entries (ratios, a summary, checks, what the
        flags do not say).

    Returns:
      The path written.
    """
    path = results_path(variant)
    record = results_record(
        _CURRENT.name,
        rows,
        flags=bench_flags(),
        seconds=time.perf_counter() - _CURRENT.started,
        smoke=_SMOKE.value,
        **extra,
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    files.write_json_atomically(path, record)
    print(f"Results: {path}", flush=True)
    return path


def bench_flags() -> dict:
    """The value of every flag the running bench defines, defaults included
    (the command line alone does not say what the defaults were)."""
    by_module = flags.FLAGS.flags_by_module_dict()
    # A module run with -m registers its flags under its file's path.
    own = by_module.get(sys.argv[0], []) or by_module.get(
        f"bench.{_CURRENT.name}", []
    )
    return {flag.name: flag.value for flag in own}


def results_record(name: str, rows: Sequence[Mapping], **extra) -> dict:
    """The JSON object `write_results` writes for bench `name`."""
    return {
        "bench": name,
        "command": f"python -m bench.{name} {shlex.join(sys.argv[1:])}".strip(),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "machine": machine(),
        **extra,
        "rows": [dict(row) for row in rows],
    }


def git_commit() -> str | None:
    """HEAD's commit, with "-dirty" when tracked files differ from it; None
    outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "-uno"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if changed else "")


def machine() -> dict:
    """The cores this process may use, the load on them, and the platform."""
    tensorflow = sys.modules.get("tensorflow")
    gpus = None
    if tensorflow is not None:
        gpus = len(tensorflow.config.list_physical_devices("GPU"))
    return {
        "cores": len(os.sched_getaffinity(0)),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "gpus": gpus,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": getattr(tensorflow, "__version__", None),
    }


def photo_jpegs(count: int, width: int = 640, height: int = 480) -> list:
    """`count` JPEG photos (bytes): smooth colour gradients plus noise, which
    compress and decode like camera photos, unlike pure noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    encoded = []
    for _ in range(count):
        base = rng.uniform(0, 255, 3) * (x[..., None] / width) + rng.uniform(
            0, 255, 3
        ) * (y[..., None] / height)
        noisy = base / 2 + rng.normal(0, 12, (height, width, 3))
        stream = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            stream, format="JPEG", quality=90
        )
        encoded.append(stream.getvalue())
    return encoded


def write_photos(
    folder: str, count: int, width: int = 640, height: int = 480
) -> str:
    """Writes `photo_jpegs` as `<folder>/p0000.jpg`...; returns `folder`."""
    os.makedirs(folder)
    for number, data in enumerate(photo_jpegs(count, width, height)):
        with open(os.path.join(folder, f"p{number:04d}.jpg"), "wb") as stream:
            stream.write(data)
    return folder


def module_command(module: str, *args: str) -> list[str]:
    """`python -m <module> <args>` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def export(
    model,
    export_base: str,
    name: str,
    members: Sequence[Mapping] = (),
    **export_kwargs,
) -> str:
    """`<export_base>/<name>/1`, exported from `model` unless it exists.

    Benches that cache their work reuse an export rather than add
    versions; `export_kwargs` go to `export_saved_model` (a projection...).
    """
    from beau_tf.serving import (
        saved_model,
    )  # pylint: disable=g-import-not-at-top

    version_dir = os.path.join(export_base, name, "1")
    if os.path.isdir(version_dir):
        return version_dir
    return saved_model.export_saved_model(
        model, export_base, name, version=1, members=members, **export_kwargs
    )


def untrained_model(
    backbones: Sequence[str] = ("efficientnet_lite0",), image_size: int = 224
):
    """`(model, members)`: ImageNet backbones with GAP, no training, one or
    an ensemble, as `python -m beau_tf.export --backbones=...` builds it."""
    from beau_tf.exporting import (
        assemble,
    )  # pylint: disable=g-import-not-at-top

    return assemble.build_export_model(
        backbones=list(backbones), image_size=image_size
    )


def export_untrained(
    export_base: str,
    name: str = "beau_tf",
    backbones: Sequence[str] = ("efficientnet_lite0",),
    image_size: int = 224,
) -> str:
    """Exports `untrained_model(backbones, image_size)` as
    `<export_base>/<name>/1` (reused when it exists); the version folder.

    EfficientNet-Lite's ImageNet weights ship with beau_tf: no download.
    """
    model, members = untrained_model(backbones, image_size)
    return export(model, export_base, name, members)


def export_and_index(
    work: str, catalog_source: str, image_size: int = 224
) -> tuple[str, str]:
    """`(model_dir, index_dir)`: `export_untrained`'s EfficientNet-Lite0 at
    `image_size` and its index of `catalog_source`, under `work` (both
    reused when an earlier run left them there)."""
    # pylint: disable-next=g-import-not-at-top
    from beau_tf.search_service import index_versions

    model_dir = export_untrained(
        os.path.join(work, "exported"), image_size=image_size
    )
    index_dir = os.path.join(work, "index")
    if not index_versions.is_index_folder(index_dir):
        build_index(model_dir, catalog_source, index_dir)
    return model_dir, index_dir


def service_inputs(
    work: str,
    num_products: int,
    photo_size: int,
    image_size: int,
    model_dir: str | None = None,
    index: str | None = None,
) -> tuple[str, str, list[Upload]]:
    """What a bench of the search service serves and sends.

    A synthetic catalogue of `num_products` under `work` (two in-the-wild
    photos of each, `photo_size` px); its photos are the good uploads. The
    service serves `model_dir` and `index` when both are given, otherwise
    `export_and_index`'s untrained Lite0 at `image_size` and its index of
    that catalogue.

    Returns:
      `(model_dir, index, photos)`.
    """
    catalogue = synthetic_catalogue.write_synthetic_catalog(
        os.path.join(work, "synthetic"),
        num_products=num_products,
        queries_per_product=2,
        num_backgrounds=0,
        image_size=photo_size,
    )
    if not (model_dir and index):
        model_dir, index = export_and_index(
            work, catalogue.catalog_csv, image_size
        )
    return model_dir, index, read_query_photos(catalogue.queries_csv)


def build_index(model_dir: str, catalog_source: str, index_dir: str) -> str:
    """Embeds a catalogue (folder or CSV) with an export and writes its index
    folder, as `python -m beau_tf.index` does without --runner; returns
    `index_dir`."""
    # pylint: disable=g-import-not-at-top
    from beau_tf.retrieval import index_dir as index_dir_lib
    from beau_tf.retrieval import shards
    from beau_tf.serving import contract

    # pylint: enable=g-import-not-at-top
    embedded = shards.embed_catalog_shard(
        model_dir,
        contract.model_identity(model_dir),
        catalog.list_catalog(catalog_source),
    )
    return index_dir_lib.build_and_save(embedded, index_dir)


def trainable_weight_count(model) -> int:
    """How many scalar weights of `model` its optimizer updates."""
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def bare_training_model(backbone: str, image_size: int, num_classes: int):
    """A randomly initialised registered backbone with global average
    pooling and a linear head, compiled for `train_on_batch`: the training
    step any fine-tuning pays, without beau_tf's additions."""
    import keras  # pylint: disable=g-import-not-at-top

    from beau_tf.models import backbones  # pylint: disable=g-import-not-at-top

    network = backbones.build_backbone(backbone, "none", image_size)
    image = keras.Input((image_size, image_size, 3))
    features = network(image)[backbones.feature_key(32)]  # (B, h, w, C)
    pooled = keras.layers.GlobalAveragePooling2D()(features)  # (B, C)
    model = keras.Model(image, keras.layers.Dense(num_classes)(pooled))
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def full_training_model(
    backbone: str,
    image_size: int,
    num_classes: int,
    trainable_from: str = "",
    train_batchnorm: bool = True,
):
    """beau_tf's training model (backbone, mask decoder with its MSE,
    attention pooling, embedding and the ArcFace identity head), randomly
    initialised and compiled for `train_on_batch({"image", "label"},
    {"mask", "logits"})`; the backbone trains from `trainable_from` (see
    `backbones.set_trainable_from`)."""
    # pylint: disable=g-import-not-at-top
    import keras

    from beau_tf.models import extractor as extractor_lib
    from beau_tf.models import losses

    # pylint: enable=g-import-not-at-top
    extractor = extractor_lib.build_extractor(
        extractor_lib.ExtractorConfig(
            backbone=backbone,
            backbone_weights="none",
            image_size=image_size,
            trainable_from=trainable_from,
            train_batchnorm=train_batchnorm,
        )
    )
    model = extractor_lib.build_training_model(extractor, num_classes)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss={"mask": losses.mask_mse, "logits": losses.build_identity_loss()},
    )
    return model


def find_grocery(dataset_dir: str) -> str | None:
    """`dataset_dir` when it holds GroceryStore's `dataset/` folder;
    otherwise says the bench is skipped (`skip`) and returns None."""
    if os.path.isfile(os.path.join(dataset_dir, "classes.csv")):
        return dataset_dir
    skip(
        f"no GroceryStore at {dataset_dir} (the shared copy beside the "
        "checkout, ../shared/data/README.md)"
    )
    return None


def write_grocery_like(
    out_dir: str, num_products: int = 81, image_size: int = 64
) -> str:
    """A synthetic catalogue laid out as GroceryStore's `dataset/` folder.

    `beau_tf.datasets.grocery.convert_grocery_store` reads it as it reads
    the real one: `num_products` iconic images (every other under
    `Packages/`, the rest under `Fruit/`, three products per coarse class)
    and two photos of each product, the first in `train.txt`, the second in
    `val.txt` for every third product and in `train.txt` for the others.
    81 products, as GroceryStore has, leave the adaptation recipe its 80
    discriminant directions.

    Returns:
      The `dataset/` folder.
    """
    synthetic = synthetic_catalogue.write_synthetic_catalog(
        os.path.join(out_dir, "synthetic"),
        num_products=num_products,
        queries_per_product=2,
        num_backgrounds=0,
        image_size=image_size,
    )
    dataset = os.path.join(out_dir, "dataset")
    classes = [
        "Class Name (str),Class ID (int),Coarse Class Name (str),"
        "Coarse Class ID (int),Iconic Image Path (str),"
        "Product Description Path (str)"
    ]
    fine_ids, splits = {}, {"train": [], "val": []}
    for fine_id, item in enumerate(catalog.list_catalog(synthetic.catalog_csv)):
        group = "Packages" if fine_id % 2 else "Fruit"
        coarse_id = fine_id // 3
        iconic = (
            f"/iconic-images-and-descriptions/{group}/c{coarse_id}/"
            f"{item.item_id}/{item.item_id}_Iconic.png"
        )
        _link(item.path, dataset + iconic)
        classes.append(
            f"{item.item_id},{fine_id},c{coarse_id},{coarse_id},{iconic},"
            "/none.txt"
        )
        fine_ids[item.item_id] = (fine_id, coarse_id)
    seen = set()
    for photo in catalog.read_queries(synthetic.queries_csv):
        fine_id, coarse_id = fine_ids[photo.item_id]
        second = photo.item_id in seen
        seen.add(photo.item_id)
        split = "val" if second and fine_id % 3 == 0 else "train"
        relative = f"{split}/{photo.item_id}/{os.path.basename(photo.path)}"
        _link(photo.path, os.path.join(dataset, relative))
        splits[split].append(f"{relative}, {fine_id}, {coarse_id}")
    for name, lines in [("classes.csv", classes)] + [
        (f"{split}.txt", lines) for split, lines in splits.items()
    ]:
        with open(os.path.join(dataset, name), "w") as stream:
            stream.write("\n".join(lines) + "\n")
    return dataset


def _link(source: str, link: str) -> None:
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.abspath(source), link)


# Where the service benches run `python -m beau_tf.serve`, and how long its
# loading may take.
SERVICE_HOST = "127.0.0.1"
_SERVICE_READY_SECONDS = 240.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now."""
    with socket.socket() as probe:
        probe.bind((SERVICE_HOST, 0))
        return probe.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """An export served as a recipe (bench.serve_load's --recipe): its
    name, export version folder, index folder and runtime."""

    name: str
    model_dir: str
    index: str
    runtime: str = "tensorflow"


def parse_recipe(text: str) -> Recipe:
    """A `Recipe` from NAME,EXPORT,INDEX[,RUNTIME]; a `ValueError` names
    what is wrong."""
    # pylint: disable-next=g-import-not-at-top
    from beau_tf.serving import runtimes

    fields = text.split(",")
    if len(fields) not in (3, 4) or not all(fields):
        raise ValueError(
            f"--recipe={text!r}: expected NAME,EXPORT,INDEX[,RUNTIME]."
        )
    recipe = Recipe(*fields)
    for what, path in (("EXPORT", recipe.model_dir), ("INDEX", recipe.index)):
        if not os.path.isdir(path):
            raise ValueError(
                f"--recipe={text!r}: {what} {path} is not a folder."
            )
    try:
        runtimes.check_name(recipe.runtime)
    except ValueError as error:
        raise ValueError(f"--recipe={text!r}: {error}") from None
    return recipe


class Service:
    """python -m beau_tf.serve in a child process on a free port of
    127.0.0.1 (needs httpx, in the test extra).

    Attributes:
      url: "http://127.0.0.1:<port>".
      process: the child.
    """

    def __init__(self, model_dir, index, log_path, **serve_flags):
        port = free_port()
        self.url = f"http://{SERVICE_HOST}:{port}"
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "beau_tf.serve",
            f"--index={index}",
            f"--model={model_dir}",
            f"--host={SERVICE_HOST}",
            f"--port={port}",
        ] + [f"--{name}={value}" for name, value in serve_flags.items()]
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            command,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self) -> str:
        with open(self.log_path) as stream:
            return stream.read()[-3000:]

    def wait_until_ready(self) -> None:
        import httpx  # pylint: disable=g-import-not-at-top

        deadline = time.monotonic() + _SERVICE_READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the service was not ready:\n{self.log_tail()}")

    def get(self, path: str) -> dict:
        import httpx  # pylint: disable=g-import-not-at-top

        return httpx.get(f"{self.url}{path}").json()

    def stop(self) -> bool:
        """Ctrl-C; whether it stopped cleanly (exit 0, "stopped")."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        lines = self.log_tail().splitlines()
        return self.process.returncode == 0 and lines[-1:] == ["stopped"]
