r"""What each runtime of the local paths costs and keeps, side by side.

  python -m bench.runtimes [--model=exported/beau_tf/1] \
      [--dataset_dir=../shared/data/grocery-store/dataset] [--rounds=3]

Takes an export (by default an untrained ImageNet EfficientNet-Lite0 with
GAP at 224 px, `harness.export_untrained`; a copy of --model otherwise, so
it is left as it was), converts it for every runtime of
`beau_tf.serving.runtimes` with `beau_tf.serving.conversion`, checked and
int8-calibrated on GroceryStore's catalogue images and unlabelled train/
photos (dev2 excluded; each copy is kept and measured even where its check
would refuse it, and the rows say whether it passes), then measures, each
group in alternating rounds in this one process:

  catalogue   images/s of `serving_default` on the catalogue's encoded
              images, batch --batch_size (decode + model, what python -m
              beau_tf.index runs), with its effective GFLOP/s;
  model       the model call alone on decoded pixels, batch --batch_size
              (and the float32 copy with its threads pinned to cores, and
              compiled for that one batch size), as effective GFLOP/s = multiply-adds x 2 x images/s (the
              multiply-adds of the convolutions and matrix products,
              counted on the converted model), beside the machine's
              measured peak for the same kind of work in the same rounds:
              a float32 matrix product (TensorFlow and OpenVINO) and a
              dense 3x3 convolution (TensorFlow; OpenVINO at float32,
              bfloat16 and int8);
  query       ms per photo of `query_multiscale` at batch 1 (GroceryStore
              val photos);

and, once, MAP@7 (exact search) on GroceryStore val and dev2 with each
runtime embedding both the catalogue and the queries, against the 0.005
that a runtime may lose. Without GroceryStore (--dataset_dir absent) a
synthetic catalogue of the same layout stands in and MAP@7 is not scored
(one line says so). Without OpenVINO the bench is skipped in one line.

Writes bench/results/runtimes.json. Figures: bench/RESULTS.md ("Runtimes").
"""

import os
import shutil

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets import grocery
from beau_tf.serving import contract
from beau_tf.serving import conversion
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import models
from beau_tf.serving import preprocess
from beau_tf.serving import runtimes
from beau_tf.serving import saved_model
from bench import harness
from bench import scoring

_MODEL = flags.DEFINE_string(
    "model",
    None,
    "Export version folder to measure (copied first); default: an "
    "untrained --backbone with GAP at --image_size.",
)
_BACKBONE = flags.DEFINE_string("backbone", "efficientnet_lite0", "Backbone.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", str(harness.GROCERY_DATASET), "GroceryStore's dataset/."
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 32, "Catalogue images per call."
)
_QUERIES = flags.DEFINE_integer(
    "queries", 8, "Photos embedded one by one per round (query_multiscale)."
)
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_CHECK_IMAGES = flags.DEFINE_integer(
    "check_images", 64, "Catalogue images each conversion is checked on."
)
_CALIBRATION_IMAGES = flags.DEFINE_integer(
    "calibration_images", 300, "Catalogue images int8 is calibrated on."
)
_SCORE = flags.DEFINE_boolean(
    "score", True, "Score MAP@7 on val and dev2 with each runtime."
)
_PEAK_SIZE = flags.DEFINE_integer(
    "peak_size",
    1536,
    "Side of the float32 matrix product measuring the peak; the 3x3 "
    "convolution is 56x56 pixels, --peak_size/12 channels in and out.",
)

SMOKE = {
    "image_size": 64,
    "dataset_dir": lambda work_dir: harness.write_grocery_like(
        os.path.join(work_dir, "grocery"), num_products=12
    ),
    "batch_size": 4,
    "queries": 2,
    "rounds": 1,
    "check_images": 4,
    "calibration_images": 8,
    "peak_size": 96,
}
# The runtimes side by side, the SavedModel first.
RUNTIMES = (runtimes.TENSORFLOW, *runtimes.RUNTIMES)
MAP_TOLERANCE = 0.005
# OpenVINO's precision hints, as the rows name them.
PRECISIONS = {"f32": "float32", "bf16": "bfloat16", "int8": "int8"}


def prepare_model() -> str:
    """The export to measure, in the run's work folder."""
    exported = os.path.join(harness.work_dir(), "exported")
    if not _MODEL.value:
        return harness.export_untrained(
            exported, "bench", [_BACKBONE.value], _IMAGE_SIZE.value
        )
    copy = os.path.join(exported, "bench", "1")
    shutil.copytree(_MODEL.value, copy)
    return copy


def multiply_adds(model_xml: str) -> int:
    """Multiply-adds per image of the convolutions and matrix products of a
    converted float32 model (batch 1)."""
    import openvino  # pylint: disable=g-import-not-at-top

    total = 0
    for op in openvino.Core().read_model(model_xml).get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        out = list(op.get_output_partial_shape(0))[1:]
        outputs = int(np.prod([d.get_length() for d in out]))
        weights = [d.get_length() for d in op.get_input_partial_shape(1)]
        if kind == "Convolution":  # (C_out, C_in, kh, kw)
            total += outputs * int(np.prod(weights[1:]))
        elif kind == "GroupConvolution":  # (G, C_out/G, C_in/G, kh, kw)
            total += outputs * int(np.prod(weights[2:]))
        else:
            attributes = op.get_attributes()
            inner = weights[-1] if attributes["transpose_b"] else weights[-2]
            total += outputs * inner
    return total


class Peaks:
    """The machine's float32 (and bfloat16, int8) peak, measured on a large
    matrix product and a dense 3x3 convolution, as GFLOP/s callables."""

    def __init__(self, size: int):
        import openvino  # pylint: disable=g-import-not-at-top

        rng = np.random.default_rng(0)
        channels = max(8, size // 12)
        self.matrix = tf.constant(rng.standard_normal((size, size)), tf.float32)
        self.pixels = rng.standard_normal((8, 56, 56, channels))
        self.pixels = self.pixels.astype(np.float32)
        kernel = rng.standard_normal((3, 3, channels, channels)) * 0.1
        kernel = tf.constant(kernel, tf.float32)
        self.matmul_flops = 2 * size**3
        self.conv_flops = 2 * 8 * 56 * 56 * 9 * channels * channels
        self.tf_matmul = tf.function(
            lambda: tf.matmul(self.matrix, self.matrix)
        )
        conv = tf.function(
            lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"),
            input_signature=[tf.TensorSpec(self.pixels.shape, tf.float32)],
        ).get_concrete_function()
        self.tf_conv = conv
        matmul = tf.function(
            lambda x: tf.matmul(x, self.matrix),
            input_signature=[tf.TensorSpec((size, size), tf.float32)],
        ).get_concrete_function()
        self.matrix_np = self.matrix.numpy()
        ov_conv = openvino.convert_model(conv, share_weights=False)
        ov_matmul = openvino.convert_model(matmul, share_weights=False)
        self.ov_conv = {
            "f32": runtimes.compile_model(ov_conv, "openvino"),
            "bf16": runtimes.compile_model(ov_conv, "openvino-bf16"),
            "int8": runtimes.compile_model(
                conversion.quantize(ov_conv, [self.pixels] * 2),
                "openvino-int8",
            ),
        }
        self.ov_matmul = runtimes.compile_model(ov_matmul, "openvino")

    def contenders(self) -> dict:
        def gflops(flops, call, repeats=3):
            return lambda: harness.rate(call, repeats, flops) / 1e9

        contenders = {
            "peak: float32 matmul, TensorFlow": gflops(
                self.matmul_flops, lambda: self.tf_matmul().numpy()
            ),
            "peak: float32 matmul, OpenVINO": gflops(
                self.matmul_flops, lambda: self.ov_matmul(self.matrix_np)
            ),
            "peak: float32 conv 3x3, TensorFlow": gflops(
                self.conv_flops,
                lambda: self.tf_conv(tf.constant(self.pixels)).numpy(),
            ),
        }
        for precision, compiled in self.ov_conv.items():
            contenders[f"peak: {PRECISIONS[precision]} conv 3x3, OpenVINO"] = (
                gflops(self.conv_flops, lambda c=compiled: c(self.pixels))
            )
        return contenders


def own_precision(runtime: str) -> str:
    """The arithmetic `runtime` mostly runs in, as the peaks name it."""
    if runtime == runtimes.TENSORFLOW:
        return "float32"
    settings = runtimes.RUNTIMES[runtime]
    if settings.weights == "int8":
        return "int8"
    return PRECISIONS[settings.inference_precision]


def model_calls(model_dir: str, pixels: np.ndarray, flops_per_image: float):
    """runtime -> a GFLOP/s measurement of its model call on `pixels`."""
    loaded = tf.saved_model.load(model_dir)
    tf_call = getattr(loaded, saved_model.PIXELS_FUNCTION)
    batch = tf.constant(pixels)
    calls = {runtimes.TENSORFLOW: lambda: tf_call(batch)["embedding"].numpy()}
    for runtime in runtimes.RUNTIMES:
        compiled = runtimes.compile_model(
            os.path.join(
                runtimes.converted_dir(model_dir, runtime), runtimes.MODEL_FILE
            ),
            runtime,
        )
        calls[runtime] = lambda c=compiled: c(pixels)
    # The float32 runtime's settings, each changed in turn.
    fp32_xml = os.path.join(
        runtimes.converted_dir(model_dir, "openvino"), runtimes.MODEL_FILE
    )
    import openvino  # pylint: disable=g-import-not-at-top

    core = openvino.Core()
    pinned = dict(runtimes.compile_config("openvino"), ENABLE_CPU_PINNING=True)
    calls["openvino, threads pinned"] = lambda c=core.compile_model(
        fp32_xml, "CPU", pinned
    ): c(pixels)
    static = core.read_model(fp32_xml)
    static.reshape(list(pixels.shape))
    calls["openvino, static batch"] = lambda c=core.compile_model(
        static, "CPU", runtimes.compile_config("openvino")
    ): c(pixels)
    flops = flops_per_image * len(pixels)
    # `loaded` lives as long as the closures that call it.
    return {
        f"model: {runtime}": (
            lambda call=call, keep=loaded: harness.rate(call, 2, flops) / 1e9
        )
        for runtime, call in calls.items()
    }


def score(model: models.EmbeddingModel, csvs: dict, splits) -> dict:
    """MAP@7 of exact search, catalogue and queries embedded by `model`."""
    items = catalog_lib.list_catalog(csvs["catalog"])
    catalogue, kept = embedding_lib.embed_files(
        model.embed_fns[contract.SIGNATURE_NAME],
        [item.path for item in items],
        description="Catalogue",
    )
    ids = np.array([items[i].item_id for i in kept])
    scores = {}
    for split in splits:
        queries = catalog_lib.read_queries(csvs[f"queries_{split}"])
        embedded, kept = embedding_lib.embed_files(
            model.embed_fns[contract.MULTISCALE_SIGNATURE_NAME],
            [q.path for q in queries],
            description=f"Queries ({split})",
        )
        true_ids = np.array([queries[i].item_id for i in kept])
        scores[f"{split} MAP@7"] = scoring.map_at_k(
            embedded, true_ids, catalogue, ids
        )
    return scores


def main(argv):
    del argv
    if not runtimes.installed():
        harness.skip(f"OpenVINO is not installed ({runtimes.INSTALL_HINT})")
        return
    dataset = _DATASET_DIR.value
    real = os.path.isfile(os.path.join(dataset, "classes.csv"))
    if not real:
        print(
            f"MAP@7 not scored: no GroceryStore at {dataset}; a synthetic "
            "catalogue of its layout stands in for the timings.",
            flush=True,
        )
        dataset = harness.write_grocery_like(
            os.path.join(harness.work_dir(), "grocery"), num_products=12
        )
    csvs = grocery.convert_grocery_store(
        dataset, os.path.join(harness.work_dir(), "csv")
    )
    catalogue = [
        item.path for item in catalog_lib.list_catalog(csvs["catalog"])
    ]
    # Unlabelled train/ photos less dev2: never a scored photo.
    photos = catalog_lib.list_photos(csvs["photos_unlabelled"])
    model_dir = prepare_model()
    identity = contract.model_identity(model_dir)
    size = identity["image_size"]

    checks = {}
    for runtime in runtimes.RUNTIMES:
        int8 = runtimes.RUNTIMES[runtime].weights == "int8"
        # Photos as well as catalogue shots: ranges calibrated on the
        # catalogue alone clip photos (bench/RESULTS.md, "Runtimes").
        check, calibration = conversion.split_images(
            [catalogue, photos],
            _CHECK_IMAGES.value,
            _CALIBRATION_IMAGES.value if int8 else 0,
        )
        # Written whatever the check finds, so that a copy the conversion
        # command would refuse is measured too; the rows say which.
        folder, seconds = harness.timed(
            conversion.convert,
            model_dir,
            runtime,
            check,
            calibration,
            least_cosine=-1.0,
            mean_cosine=-1.0,
            source=(
                "GroceryStore catalogue and unlabelled photos"
                if real
                else "synthetic"
            ),
        )
        manifest = runtimes.read_manifest(model_dir, runtime, identity)
        settings = runtimes.RUNTIMES[runtime]
        checks[runtime] = {
            "passes its check": all(
                manifest["check"]["min_cosine"][name] >= settings.least_cosine
                and manifest["check"]["mean_cosine"][name]
                >= settings.mean_cosine
                for name in contract.QUERY_SIGNATURES
            ),
            "conversion seconds": round(seconds, 1),
            "check images": manifest["check"]["num_images"],
            "calibration images": (manifest["calibration"] or {}).get(
                "num_images"
            ),
            "least cosine": manifest["check"]["min_cosine"],
            "mean cosine": manifest["check"]["mean_cosine"],
            "max mask difference": manifest["check"]["max_mask_difference"],
        }
        logging.info("Converted %s in %.0f s: %s", folder, seconds, checks)

    opened = {
        runtime: models.open_model(model_dir, identity, runtime=runtime)
        for runtime in RUNTIMES
    }
    batch_size = _BATCH_SIZE.value
    encoded, _ = conversion.read_images((catalogue * batch_size)[:batch_size])
    queries = catalog_lib.read_queries(csvs["queries_val"])[: _QUERIES.value]
    photos, _ = conversion.read_images([q.path for q in queries])
    pixels, _ = preprocess.decode_batch(tf.constant(encoded), size)
    pixels = pixels.numpy()
    macs = multiply_adds(
        os.path.join(
            runtimes.converted_dir(model_dir, "openvino"), runtimes.MODEL_FILE
        )
    )
    flops_per_image = 2.0 * macs

    def catalogue_rate(model):
        embed = model.embed_fns[contract.SIGNATURE_NAME]
        return lambda: harness.rate(lambda: embed(encoded), 2, batch_size)

    def query_ms(model):
        embed = model.embed_fns[contract.MULTISCALE_SIGNATURE_NAME]

        def measure():
            _, seconds = harness.timed(
                lambda: [embed([photo]) for photo in photos]
            )
            return 1000 * seconds / len(photos)

        return measure

    rounds = _ROUNDS.value
    catalogue_measured = harness.side_by_side(
        {r: catalogue_rate(m) for r, m in opened.items()}, rounds, warmup=True
    )
    peaks = Peaks(_PEAK_SIZE.value)
    model_measured = harness.side_by_side(
        {
            **model_calls(model_dir, pixels, flops_per_image),
            **peaks.contenders(),
        },
        rounds,
        warmup=True,
    )
    query_measured = harness.side_by_side(
        {r: query_ms(m) for r, m in opened.items()}, rounds, warmup=True
    )
    fp32_peak = max(
        model_measured.median(name)
        for name in model_measured.values
        if name.startswith("peak: float32")
    )

    map_scores = {}
    if real and _SCORE.value:
        for runtime, model in opened.items():
            map_scores[runtime] = score(model, csvs, scoring.SPLITS)
    for model in opened.values():
        model.close()

    rows = []
    for runtime in RUNTIMES:
        images_per_second = catalogue_measured.median(runtime)
        model_gflops = model_measured.median(f"model: {runtime}")
        row = {
            "runtime": runtime,
            "catalogue images/s": images_per_second,
            "catalogue x tensorflow": catalogue_measured.ratio(
                runtime, runtimes.TENSORFLOW
            ),
            "catalogue GFLOP/s": images_per_second * flops_per_image / 1e9,
            "model GFLOP/s": model_gflops,
            "model x tensorflow": model_measured.ratio(
                f"model: {runtime}", f"model: {runtimes.TENSORFLOW}"
            ),
            "model % of float32 peak": 100 * model_gflops / fp32_peak,
            "model % of its precision's peak": 100
            * model_gflops
            / model_measured.median(
                f"peak: {own_precision(runtime)} conv 3x3, OpenVINO"
            ),
            "query ms": query_measured.median(runtime),
            "query x tensorflow": query_measured.median(runtimes.TENSORFLOW)
            / query_measured.median(runtime),
            **map_scores.get(runtime, {}),
        }
        if runtime in map_scores and runtime != runtimes.TENSORFLOW:
            worst = max(
                abs(map_scores[runtime][k] - map_scores[runtimes.TENSORFLOW][k])
                for k in map_scores[runtime]
            )
            row["largest MAP@7 change"] = worst
            row[f"MAP@7 within {MAP_TOLERANCE}"] = worst <= MAP_TOLERANCE
        if runtime in checks:
            row["least cosine to SavedModel"] = min(
                checks[runtime]["least cosine"].values()
            )
            row["mean cosine to SavedModel"] = min(
                checks[runtime]["mean cosine"].values()
            )
            row["passes its check"] = checks[runtime]["passes its check"]
        rows.append(row)
    gflops_rows = [
        {
            "contender": name,
            "median GFLOP/s": model_measured.median(name),
            "x tensorflow's model call": model_measured.ratio(
                name, f"model: {runtimes.TENSORFLOW}"
            ),
        }
        for name in model_measured.values
    ]
    print(
        f"{identity['model_name']} ({_MODEL.value or _BACKBONE.value}) at "
        f"{size} px, {macs / 1e6:.0f} M multiply-adds per image, batch "
        f"{batch_size}, {rounds} rounds, {os.cpu_count()} CPUs:"
    )
    harness.print_table(rows)
    harness.print_table(gflops_rows)
    harness.write_results(
        rows,
        multiply_adds_per_image=macs,
        float32_peak_gflops=fp32_peak,
        model_calls_and_peaks=gflops_rows,
        conversion_checks=checks,
        rounds={
            "catalogue images/s": catalogue_measured.values,
            "model and peak GFLOP/s": model_measured.values,
            "query ms": query_measured.values,
        },
        gpus=len(tf.config.list_physical_devices("GPU")),
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
