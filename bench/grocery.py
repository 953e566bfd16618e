r"""GroceryStore, one command: baselines, trained models, ensembles, one table.

  python bench/grocery.py [--dataset_dir=../shared/data/grocery-store/dataset] \
      [--out_dir=out/bench_grocery] [--split=val] [--steps=200]

Every row is a SavedModel exported with `beau_tf.serving.saved_model`, whose catalogue
(the 81 iconic images) is indexed with `beau_tf.retrieval.index_dir` and whose query
photos are scored with `beau_tf.retrieval.evaluation`: the code behind `python -m
beau_tf.export / index / evaluate`. Exact search; MAP@7, recall@1 and
recall@7, overall and for packages vs fruit and vegetables. Each model is
scored twice: one view per query photo (`serving_default`) and the mean over
central crops (`query_multiscale`, zooms 1.0, 0.75, 0.5); the ensembles also
with alpha-query-expansion.

Rows:
  - off-the-shelf ImageNet EfficientNet-Lite0/1/2, GAP, GeM and MAC pooling,
    no training (the baseline a user would otherwise pick);
  - the paper-faithful model (configs/efficientnet_lite0.flags: mask loss,
    attention pooling) and the recommended one (+ configs/recommended.flags:
    the identity loss), both shortened for this CPU by
    configs/grocery_cpu.flags (a frozen backbone, --steps); the paper-faithful
    one also with procedural backgrounds instead of the train/ photos;
  - ensembles of three backbones at one image size: off-the-shelf GAP
    members, and paper-faithful trained members.

Honesty: `beau_tf.train` reads the 81 catalogue images and the `train/`
photos as unlabelled backgrounds only (it never reads train.txt's labels);
the labels of the query split are read only to score. `val` is the
development split; `--split=test` scores a held-out `test.txt` when the
dataset folder has one.

The run resumes: each finished row is kept in <out_dir>/rows/<name>.json and
each training run in <out_dir>/runs/<name>_<steps> (an interrupted one resumes
from its last checkpoint); delete them to measure again.
Writes <out_dir>/table.md, <out_dir>/masks.png (the two paper-faithful
decoders' masks on query photos) and <out_dir>/contact_sheet.png (queries,
multiscale, and their top 5 with the best ensemble; correct ones marked OK).
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from beau_tf.common import pictures
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import grocery
from beau_tf.models import ensemble as ensemble_lib
from beau_tf.models import extractor as extractor_lib
from beau_tf.retrieval import evaluation
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import metrics
from beau_tf.retrieval import query
from beau_tf.retrieval import shards
from beau_tf.serving import build as build_lib
from beau_tf.serving import contract
from beau_tf.serving import preprocess
from beau_tf.serving import saved_model
from beau_tf.training import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir",
    os.path.join(REPO, "..", "shared", "data", "grocery-store", "dataset"),
    "GroceryStoreDataset's dataset/ folder.",
)
_OUT_DIR = flags.DEFINE_string(
    "out_dir", "out/bench_grocery", "Where everything is written."
)
_SPLIT = flags.DEFINE_enum(
    "split", "val", ["val", "test"], "The query photos scored."
)
_STEPS = flags.DEFINE_integer(
    "steps", 200, "Training steps of each trained model (batch 16)."
)
_ENSEMBLE_SIZE = flags.DEFINE_integer(
    "ensemble_image_size", 224, "The one image size of the ensembles."
)

_GROUPS = ("packages", "fruit_vegetables")
_K = 7
# The resolutions the EfficientNet-Lite checkpoints were trained at.
_NATIVE_SIZES = {
    "efficientnet_lite0": 224,
    "efficientnet_lite1": 240,
    "efficientnet_lite2": 260,
}
_BASELINES = [
    ("efficientnet_lite0", "gap"),
    ("efficientnet_lite0", "gem"),
    ("efficientnet_lite0", "mac"),
    ("efficientnet_lite1", "gap"),
    ("efficientnet_lite2", "gap"),
    ("efficientnet_lite2", "gem"),
    ("efficientnet_lite2", "mac"),
]
_ENSEMBLE_BACKBONES = (
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)


def score_model(
    name: str, model_dir: str, csvs: dict, split: str, out_dir: str, qe=False
) -> dict:
    """Indexes the catalogue with `model_dir` and scores the query photos.

    Returns:
      `{"name", "seconds", "views": {"single": row, "multiscale": row[,
      "multiscale+qe": row]}}`, each row `evaluation.evaluate`'s exact row.
    """
    start = time.perf_counter()
    identity = contract.model_identity(model_dir)
    items = catalog_lib.list_catalog(csvs["catalog"])
    index_dir = os.path.join(
        out_dir, "indexes", name, str(identity["model_version"])
    )
    if not os.path.isdir(index_dir):
        index_dir_lib.build_and_save(
            shards.embed_catalog_shard(model_dir, identity, items), index_dir
        )
    bundle = index_dir_lib.load_index(index_dir)
    queries = catalog_lib.read_queries(csvs[f"queries_{split}"])
    true_id = {query.path: query.item_id for query in queries}
    group_of = evaluation.read_groups(csvs["coarse"])
    views = {}
    for multiscale in (False, True):
        embedded = query.embed_locally(
            model_dir, bundle, list(true_id), multiscale=multiscale
        )
        true_ids = [true_id[path] for path in embedded.paths]
        groups = [group_of.get(item_id, "other") for item_id in true_ids]
        rows = evaluation.evaluate(
            bundle,
            embedded.embeddings,
            true_ids,
            groups,
            qe_k=1 if qe and multiscale else 0,
            k=_K,
        )
        by_method = {row["method"]: row for row in rows}
        view = "multiscale" if multiscale else "single"
        views[view] = by_method["exact"]
        if "exact+qe" in by_method:
            views["multiscale+qe"] = by_method["exact+qe"]
    return {
        "name": name,
        "model_dir": model_dir,
        "seconds": time.perf_counter() - start,
        "views": views,
    }


def cached(out_dir: str, name: str, compute) -> dict:
    """`compute()`'s result, kept in <out_dir>/rows/<name>.json."""
    path = os.path.join(out_dir, "rows", f"{name}.json")
    if os.path.exists(path):
        with open(path) as stream:
            return json.load(stream)
    result = compute()
    config_lib.write_json_atomically(path, result)
    logging.info("%s: %s", name, json.dumps(result["views"]["single"]))
    return result


def export(
    model: keras.Model,
    name: str,
    out_dir: str,
    members: list[dict] = (),
) -> str:
    """Exports `model` under <out_dir>/exported/<name>; frees its graph."""
    model_dir = saved_model.export_saved_model(
        model,
        os.path.join(out_dir, "exported"),
        name,
        members=members,
    )
    keras.backend.clear_session()
    return model_dir


def off_the_shelf(backbone: str, pooling: str, image_size: int):
    """An extractor with ImageNet weights and no training."""
    return extractor_lib.build_extractor(
        extractor_lib.ExtractorConfig(
            backbone=backbone,
            backbone_weights="imagenet",
            image_size=image_size,
            pooling=pooling,
        )
    )


def train_run(
    name: str, flagfiles: list[str], overrides: list[str], out_dir: str
) -> str:
    """Runs `python -m beau_tf.train` (skipped when finished); its workdir."""
    workdir = os.path.join(out_dir, "runs", name)
    if os.path.exists(os.path.join(workdir, config_lib.EXTRACTOR_FILE)):
        return workdir
    command = [sys.executable, "-m", "beau_tf.train"]
    command += [f"--flagfile={os.path.join(REPO, f)}" for f in flagfiles]
    command += overrides + [f"--workdir={workdir}"]
    logging.info("Training %s: %s", name, " ".join(command))
    subprocess.run(command, check=True)
    return workdir


def trained_model_dir(name: str, workdirs: list[str], out_dir: str) -> str:
    """Exports the trained extractors of `workdirs` (one, or an ensemble)."""
    model, members = build_lib.build_export_model(workdirs)
    return export(model, name, out_dir, members)


def draw_masks(
    model_dirs: dict[str, str], paths: list[str], out_path: str
) -> str:
    """Each query photo as served, then each model's predicted mask on it."""
    signatures = {
        label: tf.saved_model.load(model_dir).signatures[
            contract.SIGNATURE_NAME
        ]
        for label, model_dir in model_dirs.items()
    }
    cells, captions = [], []
    for path in paths:
        with open(path, "rb") as stream:
            image_bytes = tf.constant([stream.read()])
        canvas = None
        for label, serve in signatures.items():
            mask = np.asarray(serve(images=image_bytes)["mask"])[0, ..., 0]
            if canvas is None:
                canvas = served_pixels(path, mask.shape[0])
                cells.append(canvas)
                captions.append(os.path.basename(path))
            cells.append(pictures.overlay_mask(canvas, mask))
            captions.append(f"{label}: {mask.mean():.2f}")
    grid = pictures.image_grid(
        cells, captions, columns=2 * (1 + len(model_dirs))
    )
    return pictures.save_png(grid, out_path)


def served_pixels(path: str, size: int) -> np.ndarray:
    """The photo as the model sees it: fitted into size x size, padded grey."""
    with open(path, "rb") as stream:
        pixels = preprocess.decode_and_resize(tf.constant(stream.read()), size)
    return np.asarray(pixels).round().astype(np.uint8)


def draw_contact_sheet(
    model_dir: str, index_dir: str, queries: list, out_path: str
) -> str:
    """Queries (multiscale) with their top-5 catalogue results, OK marked."""
    bundle = index_dir_lib.load_index(index_dir)
    embedded = query.embed_locally(
        model_dir, bundle, [q.path for q in queries], multiscale=True
    )
    ids, scores = query.search(bundle, embedded.embeddings, 5, True)
    true_id = {q.path: q.item_id for q in queries}
    sheet = query.contact_sheet(
        bundle,
        embedded.paths,
        ids,
        scores,
        relevant=[{true_id[path]} for path in embedded.paths],
    )
    return pictures.save_png(sheet, out_path)


def spread(queries: list, count: int) -> list:
    """`count` queries evenly spread over the (product-sorted) list."""
    step = max(1, len(queries) // count)
    return queries[::step][:count]


def table(results: list[tuple[str, str, dict]]) -> str:
    """A markdown table: one line per (model, query view), overall and per
    group (packages, fruit_vegetables)."""
    rows = []
    for label, view, row in results:
        line = {
            "model": label,
            "queries": view,
            "MAP@7": row[f"map@{_K}_hits"],
            "recall@1": row["recall@1"],
            "recall@7": row[f"recall@{_K}"],
        }
        for group in _GROUPS:
            metrics = row.get("by_group", {}).get(group, {})
            line[f"{group} MAP@7"] = metrics.get(f"map@{_K}_hits", "")
            line[f"{group} R@1"] = metrics.get("recall@1", "")
            line[f"{group} R@7"] = metrics.get(f"recall@{_K}", "")
        rows.append(line)
    columns = list(rows[0])
    return metrics.format_table(rows, columns, markdown=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not os.path.isdir(_DATASET_DIR.value):
        logging.warning(
            "%s not found; skipping (the benchmark reads the shared "
            "GroceryStore copy beside the checkout).",
            _DATASET_DIR.value,
        )
        return
    started = time.perf_counter()
    out_dir, split, steps = _OUT_DIR.value, _SPLIT.value, _STEPS.value
    csvs = grocery.convert_grocery_store(
        _DATASET_DIR.value, os.path.join(out_dir, "csv")
    )
    if f"queries_{split}" not in csvs:
        raise ValueError(f"{_DATASET_DIR.value} has no {split}.txt.")
    results = []

    def add(label: str, result: dict):
        for view in ("single", "multiscale", "multiscale+qe"):
            if view in result["views"]:
                results.append((label, view, result["views"][view]))

    # 1. Off-the-shelf ImageNet backbones: the baseline.
    for backbone, pooling in _BASELINES:
        size = _NATIVE_SIZES[backbone]
        name = f"{split}_{backbone}_{size}_{pooling}"
        result = cached(
            out_dir,
            name,
            lambda: score_model(
                name,
                export(off_the_shelf(backbone, pooling, size), name, out_dir),
                csvs,
                split,
                out_dir,
            ),
        )
        add(f"{backbone} {size}px {pooling.upper()}, ImageNet", result)

    # 2. Trained: paper-faithful and recommended, on the same backbone.
    background_dir = os.path.join(_DATASET_DIR.value, "train")
    common = [
        f"--catalog={csvs['catalog']}",
        f"--background_dir={background_dir}",
        f"--steps={steps}",
    ]
    lite0 = "configs/efficientnet_lite0.flags"
    cpu = "configs/grocery_cpu.flags"
    runs = {
        "paper_lite0": ([lite0, cpu], []),
        # The same, on procedural scenes instead of the train/ photos.
        "paper_lite0_procedural": ([lite0, cpu], ["--background_dir="]),
        "recommended_lite0": ([lite0, "configs/recommended.flags", cpu], []),
    }
    size = _ENSEMBLE_SIZE.value
    for backbone in _ENSEMBLE_BACKBONES[1:]:
        config = f"configs/{backbone}.flags"
        if not os.path.exists(os.path.join(REPO, config)):
            config = lite0
        runs[f"paper_{backbone[-5:]}_{size}"] = (
            [config, cpu],
            [f"--backbone={backbone}", f"--image_size={size}"],
        )
    workdirs = {}
    for run_name, (flagfiles, overrides) in runs.items():
        workdirs[run_name] = train_run(
            f"{run_name}_{steps}", flagfiles, common + overrides, out_dir
        )
    trained_dirs = {}
    for run_name, label in [
        ("paper_lite0", "Lite0 paper-faithful (mask loss, attention)"),
        (
            "paper_lite0_procedural",
            "Lite0 paper-faithful, procedural backgrounds",
        ),
        ("recommended_lite0", "Lite0 recommended (+ identity loss)"),
    ]:
        name = f"{split}_{run_name}_{steps}"
        result = cached(
            out_dir,
            name,
            lambda: score_model(
                name,
                trained_model_dir(name, [workdirs[run_name]], out_dir),
                csvs,
                split,
                out_dir,
            ),
        )
        add(f"{label}, {steps} steps", result)
        trained_dirs[run_name] = result["model_dir"]

    # 3. Ensembles of three backbones at one image size.
    name = f"{split}_ensemble_imagenet_gap_{size}"

    def imagenet_ensemble():
        members = [off_the_shelf(b, "gap", size) for b in _ENSEMBLE_BACKBONES]
        model = ensemble_lib.build_ensemble(members, [1.0] * len(members))
        model_dir = export(model, name, out_dir)
        return score_model(name, model_dir, csvs, split, out_dir, qe=True)

    result = cached(out_dir, name, imagenet_ensemble)
    add(f"ensemble Lite0+1+2 {size}px GAP, ImageNet", result)
    best_dir, best_name = result["model_dir"], name

    name = f"{split}_ensemble_paper_{size}_{steps}"
    paper_runs = ["paper_lite0"] + [
        f"paper_{b[-5:]}_{size}" for b in _ENSEMBLE_BACKBONES[1:]
    ]
    result = cached(
        out_dir,
        name,
        lambda: score_model(
            name,
            trained_model_dir(name, [workdirs[r] for r in paper_runs], out_dir),
            csvs,
            split,
            out_dir,
            qe=True,
        ),
    )
    add(f"ensemble Lite0+1+2 {size}px paper-faithful, {steps} steps", result)

    # 4. Pictures and the table.
    queries = catalog_lib.read_queries(csvs[f"queries_{split}"])
    masks_png = draw_masks(
        {
            "train/ backgrounds": trained_dirs["paper_lite0"],
            "procedural": trained_dirs["paper_lite0_procedural"],
        },
        [q.path for q in spread(queries, 16)],
        os.path.join(out_dir, "masks.png"),
    )
    identity = contract.model_identity(best_dir)
    sheet_png = draw_contact_sheet(
        best_dir,
        os.path.join(
            out_dir, "indexes", best_name, str(identity["model_version"])
        ),
        spread(queries, 12),
        os.path.join(out_dir, "contact_sheet.png"),
    )
    text = (
        f"GroceryStore {split}: {len(queries)} query photos, 81 catalogue "
        "images; exact search; MAP@7 with one correct product per query.\n\n"
        + table(results)
    )
    with open(os.path.join(out_dir, "table.md"), "w") as stream:
        stream.write(text + "\n")
    print(text)
    print(f"\nPictures: {masks_png}, {sheet_png}")
    print(f"Total {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    app.run(main)
