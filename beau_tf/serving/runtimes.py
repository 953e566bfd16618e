"""Runs an export's model on OpenVINO instead of TensorFlow, for local paths.

The SavedModel stays the model: TF Serving loads it, and a local export runs
it by default (`tensorflow`). `python -m beau_tf.convert` can add copies of
its model call converted for OpenVINO (pip install 'beau_tf[openvino]'),
each checked against the SavedModel on real images before it is written:

  openvino        float32 weights, float32 arithmetic
  openvino-bf16   the same weights, bfloat16 arithmetic where the CPU has it
  openvino-int8   weights and activations quantised to int8, calibrated on
                  catalogue images (NNCF post-training quantisation)

A copy lives inside the export version folder, where TF Serving never reads:

  <version>/assets.extra/runtimes/<runtime>/model.xml, model.bin
  <version>/assets.extra/runtimes/<runtime>/manifest.json

Only the model call is converted ((B, S, S, 3) pixels in [0, 255] ->
{"embedding", "mask"}): decoding, the query views, the mask-guided views and
the projection stay `beau_tf.serving.signatures`' one implementation, which
`RuntimeSignatures` runs around the converted call. Its answers carry the
export's own identity and model fingerprint, so an index built with one
runtime is searched with any other; the manifest names the export the copy
was converted from (model fingerprint and the sha256 of each file), and a
copy of another export, or a changed file, is refused.

`models.open_model(..., runtime=...)` opens one; without OpenVINO installed
it says so in one line and runs the SavedModel instead.
"""

import dataclasses
import importlib.util
import json
import os
import queue
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from beau_tf.common import files
from beau_tf.serving import contract
from beau_tf.serving import signatures

TENSORFLOW = "tensorflow"
RUNTIMES_DIR = os.path.join("assets.extra", "runtimes")
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
INSTALL_HINT = "pip install 'beau_tf[openvino]'"
# The outputs of the converted model call.
MODEL_OUTPUTS = ("embedding", "mask")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One way to run a converted model call.

    Attributes:
      weights: "float32", or "int8" for a quantised copy.
      inference_precision: OpenVINO's INFERENCE_PRECISION_HINT ("f32",
        "bf16"): the arithmetic of what is not int8.
      least_cosine: the least cosine similarity of an image's embedding to
        the SavedModel's that a conversion accepts, each signature;
      mean_cosine: and the least mean over the check images (measured
        margins: bench/RESULTS.md, "Runtimes").
      description: for logs and messages.
    """

    weights: str
    inference_precision: str
    least_cosine: float
    mean_cosine: float
    description: str


RUNTIMES = {
    "openvino": Runtime("float32", "f32", 0.9999, 0.9999, "OpenVINO float32"),
    "openvino-bf16": Runtime(
        "float32", "bf16", 0.99, 0.995, "OpenVINO bfloat16"
    ),
    # As strict as bf16: on GroceryStore an int8 copy of Lite0 at least
    # 0.936 / mean 0.983 lost 0.10 MAP@7, a bf16 one at 0.997 / 0.9994
    # kept it within 0.003 (bench/RESULTS.md, "Runtimes").
    "openvino-int8": Runtime("int8", "f32", 0.99, 0.995, "OpenVINO int8"),
}
NAMES = (TENSORFLOW, *RUNTIMES)
FLAG_HELP = (
    "What runs the model of a local --model: tensorflow (the SavedModel), or "
    "a copy converted by python -m beau_tf.convert: "
    + ", ".join(RUNTIMES)
    + f" (needs {INSTALL_HINT}; without it, tensorflow with a warning)."
)


class RuntimeNotInstalledError(ImportError):
    """The runtime's package is not installed; the message says how to
    install it."""


class ConvertedModelError(ValueError):
    """A converted copy that is missing, or not of this export; the message
    says what to do."""


def check_name(runtime: str) -> str:
    """`runtime`, if it names a runtime; ValueError otherwise."""
    if runtime not in NAMES:
        raise ValueError(
            f"runtime={runtime!r} is unknown; expected one of {list(NAMES)}."
        )
    return runtime


def installed() -> bool:
    """Whether OpenVINO is installed."""
    return importlib.util.find_spec("openvino") is not None


def require_installed(runtime: str) -> None:
    """Raises `RuntimeNotInstalledError` when `runtime` needs OpenVINO and it
    is not installed."""
    if check_name(runtime) != TENSORFLOW and not installed():
        raise RuntimeNotInstalledError(
            f"runtime {runtime} needs OpenVINO, which is not installed: "
            f"{INSTALL_HINT}"
        )


def converted_dir(model_dir: str, runtime: str) -> str:
    """Where the copy of `model_dir` converted for `runtime` lives."""
    return os.path.join(model_dir, RUNTIMES_DIR, runtime)


def source_of(identity: Mapping) -> dict:
    """What a manifest records of the export a copy was converted from: the
    keys `contract.check_compatible` compares."""
    return {key: identity.get(key) for key in contract.COMPATIBILITY_KEYS}


def read_manifest(model_dir: str, runtime: str, identity: Mapping) -> dict:
    """The manifest of `model_dir`'s copy for `runtime`, checked against the
    export and the copy's files.

    Raises:
      ConvertedModelError: there is no such copy, it was converted from
        another export (other weights or settings), or a file changed.
    """
    folder = converted_dir(model_dir, runtime)
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise ConvertedModelError(
            f"{model_dir} has no copy converted for {runtime} ({folder} "
            "is missing): convert it with python -m beau_tf.convert "
            f"--model={model_dir} --runtime={runtime} --catalog=CATALOG, or "
            "run it with --runtime=tensorflow."
        )
    with open(path) as stream:
        manifest = json.load(stream)
    source = manifest.get("source", {})
    differ = [k for k, v in source_of(identity).items() if source.get(k) != v]
    if differ or manifest.get("runtime") != runtime:
        raise ConvertedModelError(
            f"{folder} was converted from another model than {model_dir} "
            f"(differs in {', '.join(differ) or 'runtime'}): remove it and "
            f"convert again (python -m beau_tf.convert --model={model_dir} "
            f"--runtime={runtime} --catalog=CATALOG)."
        )
    for name, expected in manifest.get("files", {}).items():
        if files.file_sha256(os.path.join(folder, name)) != expected:
            raise ConvertedModelError(
                f"{os.path.join(folder, name)} is not the file converted "
                "(its sha256 differs from the manifest's): remove "
                f"{folder} and convert again."
            )
    return manifest


def compile_config(runtime: str) -> dict:
    """OpenVINO's CPU settings for `runtime`."""
    return {
        "INFERENCE_PRECISION_HINT": RUNTIMES[runtime].inference_precision,
        # Calls are synchronous, one batch at a time: one stream, every core.
        "PERFORMANCE_HINT": "LATENCY",
        # Cores are shared with TensorFlow's decoding threads (and, here,
        # other jobs); bench.runtimes times pinned threads beside these.
        "ENABLE_CPU_PINNING": False,
    }


class RuntimeSignatures(signatures.Signatures):
    """The export's signatures around an OpenVINO model call.

    Args:
      compiled_model: the converted model call, compiled (`openvino.
        CompiledModel`): "pixels" (B, S, S, 3) -> "embedding" (B, D),
        "mask" (B, S, S, 1).
      identity: the export's identity (`contract.model_identity`): image
        size, zooms, mask views and the model fingerprint the answers carry.
      projection: the export's projection (`signatures.read_projection`).
    """

    def __init__(
        self,
        compiled_model,
        identity: Mapping,
        projection: tuple[np.ndarray, np.ndarray] | None,
    ):
        ports = {}
        for output in compiled_model.outputs:
            for name in MODEL_OUTPUTS:
                if name in output.get_names():
                    ports[name] = output
        if set(ports) != set(MODEL_OUTPUTS):
            raise ConvertedModelError(
                "The converted model has outputs "
                f"{[sorted(o.get_names()) for o in compiled_model.outputs]}; "
                f"{list(MODEL_OUTPUTS)} expected. Convert it again."
            )
        self._ports = ports
        self._embedding_dim = ports["embedding"].get_partial_shape()[1]
        self._mask_shape = ports["mask"].get_partial_shape()
        super().__init__(
            image_size=identity["image_size"],
            embedding_dim=self._embedding_dim.get_length(),
            zooms=identity["query_zooms"],
            projection=projection,
            mask_views=identity.get("query_mask_views", ()),
            model_fingerprint=identity["model_fingerprint"],
            name="beau_tf_runtime",
        )
        self._compiled = compiled_model
        # Idle infer requests: one request serves one call at a time, and
        # the service embeds from several threads. (Not thread-locals:
        # TensorFlow runs numpy_function with a Python thread state made
        # for each call, whose teardown would destroy a request mid-use.)
        self._idle_requests = queue.SimpleQueue()

    def _infer(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, S, 3) -> ((B, D), (B, S, S, 1)), float32, on OpenVINO."""
        if not len(pixels):
            dim = self._embedding_dim.get_length()
            mask_shape = [d.get_length() for d in list(self._mask_shape)[1:]]
            return (
                np.zeros((0, dim), np.float32),
                np.zeros((0, *mask_shape), np.float32),
            )
        try:
            request = self._idle_requests.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            results = request.infer([np.ascontiguousarray(pixels)])
            return (
                np.asarray(results[self._ports["embedding"]], np.float32),
                np.asarray(results[self._ports["mask"]], np.float32),
            )
        finally:
            self._idle_requests.put(request)

    def call_model(self, pixels: tf.Tensor) -> dict:
        embedding, mask = tf.numpy_function(
            self._infer, [pixels], [tf.float32, tf.float32], name="openvino"
        )
        size = self._image_size
        embedding.set_shape([None, self._embedding_dim.get_length()])
        mask.set_shape([None, size, size, 1])
        return {"embedding": embedding, "mask": mask}


def compile_model(model, runtime: str):
    """An `openvino.Model` (or the path of its .xml) compiled for the CPU
    with `runtime`'s settings."""
    import openvino  # pylint: disable=g-import-not-at-top

    return openvino.Core().compile_model(model, "CPU", compile_config(runtime))


def open_signatures(
    model_dir: str, runtime: str, identity: Mapping
) -> RuntimeSignatures:
    """The signatures of `model_dir` around its copy converted for
    `runtime`, checked to be that export's (`read_manifest`).

    Args:
      model_dir: the export version folder.
      runtime: one of `RUNTIMES`.
      identity: the export's identity (`contract.model_identity`).

    Raises:
      RuntimeNotInstalledError: OpenVINO is not installed.
      ConvertedModelError: see `read_manifest`.
    """
    require_installed(runtime)
    read_manifest(model_dir, runtime, identity)
    compiled = compile_model(
        os.path.join(converted_dir(model_dir, runtime), MODEL_FILE), runtime
    )
    return RuntimeSignatures(
        compiled, identity, signatures.read_projection(model_dir)
    )
