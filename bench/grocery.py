r"""GroceryStore, one command: baselines, trained models, adapted models,
ensembles, one table.

  python -m bench.grocery [--dataset_dir=../shared/data/grocery-store/dataset] \
      [--out_dir=out/bench_grocery] [--splits=val,dev2] [--steps=200]

Every row is a SavedModel exported with `beau_tf.serving.saved_model`, whose
catalogue (the 81 iconic images) is indexed with `beau_tf.retrieval.index_dir`
and whose query photos are scored with `beau_tf.retrieval.evaluation`: the
code behind `python -m beau_tf.export / index / evaluate`. Exact search;
MAP@7, recall@1 and recall@7 on each split, and per group (packages vs fruit
and vegetables) on the first. Each model is scored with one view per query
photo (`serving_default`) and with the mean over central crops
(`query_multiscale`, zooms 1.0, 0.75, 0.5).

Splits: `val` (296 photos) and `dev2` (every 8th photo of train.txt, 330
photos), the two development sets; `--splits=test` scores a held-out
`test.txt` when the dataset folder has one.

Rows:
  - off-the-shelf ImageNet EfficientNet-Lite0/1/2 with GAP, no training (the
    baseline a user would otherwise pick);
  - trained with `python -m beau_tf.train`: the paper-faithful model
    (configs/efficientnet_lite0.flags: mask loss, attention pooling) and one
    with the identity loss too (+ configs/identity_loss.flags), shortened for
    this CPU by configs/grocery_cpu.flags (a frozen backbone, --steps); the
    paper-faithful one also with procedural backgrounds;
  - adapted (`beau_tf.adaptation`, as `python -m beau_tf.export
    --adapt_photos` does): a projection self-trained on the unlabelled
    train/ photos (dev2 excluded) baked into the export;
  - ensembles of three backbones at one image size, plain and adapted;
  - trained with the paper's losses plus the distillation loss
    (configs/distill.flags): the adapted ensemble labels the unlabelled
    photos; Lite0 (and, as ablations, Lite0 with its backbone frozen for
    800 steps, and Lite0 without the paper's mask loss and attention
    pooling), and the ensemble of the three distilled backbones.

Honesty: training reads the 81 catalogue images and, as backgrounds, the
unlabelled train/ photos less dev2 (`photos_unlabelled.csv`); adaptation
and the distillation loss read the same photos, unlabelled. Labels of the scored splits are read only
to score.

The run resumes: each finished row is kept in <out_dir>/rows/<name>.json and
each training run in <out_dir>/runs/<name>_<steps> (an interrupted one resumes
from its last checkpoint); delete them to measure again.
Writes <out_dir>/table.md, <out_dir>/masks.png (the trained decoders' masks on
query photos) and <out_dir>/contact_sheet.png (queries, multiscale, and their
top 5 with the distilled ensemble, adapted; correct ones marked OK), and the
table's rows to bench/results/grocery.json (grocery-<splits>.json for other
--splits). Says it is skipped when the dataset folder is absent. Figures:
bench/RESULTS.md ("Training", "Export", "Search").

--stop_after ends the run after one group of rows (its table and results
still written); --smoke runs the first group, Lite0 only, on a synthetic
catalogue laid out as GroceryStore (`harness.write_grocery_like`): the other
groups train ten models and export eighteen more, minutes at any size.
"""

import json
import os
import subprocess
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from beau_tf.adaptation import learn
from beau_tf.adaptation import self_training
from beau_tf.common import files
from beau_tf.common import pictures
from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets import grocery
from beau_tf.retrieval import evaluation
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import metrics
from beau_tf.retrieval import query
from beau_tf.exporting import assemble
from beau_tf.serving import contract
from beau_tf.serving import preprocess
from beau_tf.training import workdir as workdir_lib
from bench import harness

_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir",
    str(harness.GROCERY_DATASET),
    "GroceryStoreDataset's dataset/ folder.",
)
_OUT_DIR = flags.DEFINE_string(
    "out_dir", "out/bench_grocery", "Where everything is written."
)
_SPLITS = flags.DEFINE_list(
    "splits", ["val", "dev2"], "The query sets scored (val, dev2, test)."
)
_STEPS = flags.DEFINE_integer(
    "steps", 200, "Training steps of each trained model (batch 16)."
)
_DISTILL_STEPS = flags.DEFINE_integer(
    "distill_steps",
    2000,
    "Training steps of the models distilled from the adapted ensemble "
    "(batch 16 catalogue scenes + 16 photos).",
)
_ENSEMBLE_SIZE = flags.DEFINE_integer(
    "ensemble_image_size", 224, "The one image size of the ensembles."
)
_BASELINES = flags.DEFINE_list(
    "baselines",
    ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
    "Off-the-shelf backbones of the first rows, each at its native size.",
)
_STOP_AFTER = flags.DEFINE_enum(
    "stop_after",
    None,
    ["baselines", "trained", "ensembles", "distilled"],
    "End after this group of rows (default: all, then the pictures).",
)

SMOKE = {
    "dataset_dir": lambda work_dir: harness.write_grocery_like(
        os.path.join(work_dir, "grocery")
    ),
    "out_dir": lambda work_dir: os.path.join(work_dir, "out"),
    "baselines": ["efficientnet_lite0"],
    "stop_after": "baselines",
}

_GROUPS = ("packages", "fruit_vegetables")
_K = 7
# The resolutions the EfficientNet-Lite checkpoints were trained at.
_NATIVE_SIZES = {
    "efficientnet_lite0": 224,
    "efficientnet_lite1": 240,
    "efficientnet_lite2": 260,
}
_ENSEMBLE_BACKBONES = (
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)
# The adaptation recipes (see bench/RESULTS.md for how they were chosen).
_ADAPT_SINGLE = self_training.SelfTrainingConfig()
_ADAPT_ENSEMBLE = self_training.SelfTrainingConfig(pca_dim=512, ridge=1.0)


def score_model(
    name: str,
    model_dir: str,
    csvs: dict,
    splits: list[str],
    out_dir: str,
) -> dict:
    """Indexes the catalogue with `model_dir` and scores each split's photos.

    Returns:
      `{"name", "model_dir", "seconds", "views": {split: {"single": row,
      "multiscale": row}}}`, each row `evaluation.evaluate`'s exact row.
    """
    start = time.perf_counter()
    identity = contract.model_identity(model_dir)
    index_dir = os.path.join(
        out_dir, "indexes", name, str(identity["model_version"])
    )
    if not os.path.isdir(index_dir):
        harness.build_index(model_dir, csvs["catalog"], index_dir)
    bundle = index_dir_lib.load_index(index_dir)
    group_of = evaluation.read_groups(csvs["coarse"])
    views = {}
    for split in splits:
        queries = catalog_lib.read_queries(csvs[f"queries_{split}"])
        true_id = {q.path: q.item_id for q in queries}
        views[split] = {}
        for multiscale in (False, True):
            embedded = query.embed_locally(
                model_dir, bundle, list(true_id), multiscale=multiscale
            )
            true_ids = [true_id[path] for path in embedded.paths]
            groups = [group_of.get(item_id, "other") for item_id in true_ids]
            rows = evaluation.evaluate(
                bundle, embedded.embeddings, true_ids, groups, k=_K
            )
            view = "multiscale" if multiscale else "single"
            views[split][view] = rows[0]  # exact search
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
    files.write_json_atomically(path, result)
    logging.info("%s: %s", name, json.dumps(result["views"]))
    return result


def export(
    model: keras.Model,
    name: str,
    out_dir: str,
    members: list[dict] = (),
    adaptation: tuple | None = None,
) -> str:
    """Exports `model` under <out_dir>/exported/<name>.

    `adaptation`: `(projection, record)` from `learn.learn_projection`.
    """
    arrays = record = None
    if adaptation is not None:
        projection, record = adaptation
        arrays = (projection.mean, projection.matrix)
    return harness.export(
        model,
        os.path.join(out_dir, "exported"),
        name,
        members,
        projection=arrays,
        adaptation=record,
    )


def plain_and_adapted(
    model: keras.Model,
    name: str,
    csvs: dict,
    recipe: self_training.SelfTrainingConfig,
    out_dir: str,
    members: list[dict] = (),
) -> tuple[str, str]:
    """Exports `model` as it is and adapted to the unlabelled photos (the
    same model, so the rows differ by the adaptation alone); frees its graph.
    """
    model_dirs = {}
    for variant in ("plain", "adapted"):
        existing = os.path.join(out_dir, "exported", f"{name}_{variant}", "1")
        if os.path.isdir(existing):
            model_dirs[variant] = existing
            continue
        adaptation = None
        if variant == "adapted":
            adaptation = learn.learn_projection(
                model,
                contract.DEFAULT_QUERY_ZOOMS,
                [i.path for i in catalog_lib.list_catalog(csvs["catalog"])],
                catalog_lib.list_photos(csvs["photos_unlabelled"]),
                recipe,
                source=csvs["photos_unlabelled"],
            )
        model_dirs[variant] = export(
            model, f"{name}_{variant}", out_dir, members, adaptation
        )
    keras.backend.clear_session()
    return model_dirs["plain"], model_dirs["adapted"]


def train_run(
    name: str, flagfiles: list[str], overrides: list[str], out_dir: str
) -> str:
    """Runs `python -m beau_tf.train` (skipped when finished); its workdir."""
    workdir = os.path.join(out_dir, "runs", name)
    if workdir_lib.is_finished(workdir):
        return workdir
    command = harness.module_command(
        "beau_tf.train",
        *(f"--flagfile={harness.REPO / f}" for f in flagfiles),
        *overrides,
        f"--workdir={workdir}",
    )
    logging.info("Training %s: %s", name, " ".join(command))
    subprocess.run(command, check=True)
    return workdir


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


def table_rows(results: list[tuple[str, dict]], splits: list[str]) -> list:
    """One row per (model, query view): MAP@7, R@1 and R@7 on each split,
    and per group on the first split."""
    rows = []
    for label, views in results:
        for view in ("single", "multiscale"):
            line = {"model": label, "queries": view}
            for split in splits:
                row = views[split][view]
                line[f"{split} MAP@7"] = row[f"map@{_K}_hits"]
                line[f"{split} R@1"] = row["recall@1"]
                line[f"{split} R@7"] = row[f"recall@{_K}"]
            by_group = views[splits[0]][view].get("by_group", {})
            for group in _GROUPS:
                line[f"{splits[0]} {group} MAP@7"] = by_group.get(
                    group, {}
                ).get(f"map@{_K}_hits", "")
            rows.append(line)
    return rows


def write_table(rows: list[dict], csvs: dict, splits: list[str], out_dir):
    """<out_dir>/table.md and the results file; prints the table."""
    sizes = ", ".join(
        f"{split} {len(catalog_lib.read_queries(csvs[f'queries_{split}']))}"
        for split in splits
    )
    text = (
        f"GroceryStore ({sizes} query photos), 81 catalogue images; exact "
        "search; MAP@7 with one correct product per query.\n\n"
        + metrics.format_table(rows, list(rows[0]), markdown=True)
    )
    with open(os.path.join(out_dir, "table.md"), "w") as stream:
        stream.write(text + "\n")
    print(text)
    harness.write_results(
        rows,
        variant=None if splits == ["val", "dev2"] else "_".join(splits),
        query_photos=sizes,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    dataset_dir = harness.find_grocery(_DATASET_DIR.value)
    if dataset_dir is None:
        return
    started = time.perf_counter()
    out_dir, splits, steps = _OUT_DIR.value, _SPLITS.value, _STEPS.value
    csvs = grocery.convert_grocery_store(
        dataset_dir, os.path.join(out_dir, "csv")
    )
    for split in splits:
        if f"queries_{split}" not in csvs:
            raise ValueError(f"{dataset_dir} has no {split} split.")
    tag = "_".join(splits)
    results = []

    def add(label: str, name: str, model_dir: str) -> dict:
        result = cached(
            out_dir,
            f"{tag}_{name}",
            lambda: score_model(name, model_dir(), csvs, splits, out_dir),
        )
        results.append((label, result["views"]))
        return result

    def add_pair(label: str, name: str, build, recipe):
        """Rows for a model, plain and adapted; `build()` gives `(model,
        members)` and is called only when a row is not cached."""
        exported = {}

        def model_dir(variant):
            def get():
                if not exported:
                    model, members = build()
                    exported.update(
                        zip(
                            ("plain", "adapted"),
                            plain_and_adapted(
                                model, name, csvs, recipe, out_dir, members
                            ),
                        )
                    )
                return exported[variant]

            return get

        plain = add(label, f"{name}_plain", model_dir("plain"))
        adapted = add(
            f"{label} + adapted", f"{name}_adapted", model_dir("adapted")
        )
        return plain, adapted

    def stop_after(group: str) -> bool:
        """Whether the run ends after `group`; then writes the table."""
        if _STOP_AFTER.value != group:
            return False
        write_table(table_rows(results, splits), csvs, splits, out_dir)
        return True

    # 1. Off-the-shelf ImageNet backbones: the baseline, plain and adapted.
    for backbone in _BASELINES.value:
        size = _NATIVE_SIZES[backbone]
        add_pair(
            f"{backbone} {size}px GAP, ImageNet",
            f"{backbone}_{size}_gap",
            lambda: assemble.build_export_model(
                backbones=[backbone], image_size=size
            ),
            _ADAPT_SINGLE,
        )

    if stop_after("baselines"):
        return

    # 2. Trained with python -m beau_tf.train; backgrounds never hold dev2.
    common = [
        f"--catalog={csvs['catalog']}",
        f"--background_dir={csvs['photos_unlabelled']}",
        f"--steps={steps}",
    ]
    lite0 = "configs/efficientnet_lite0.flags"
    cpu = "configs/grocery_cpu.flags"
    runs = {
        "paper_lite0": (
            [lite0, cpu],
            [],
            "Lite0 paper-faithful (mask loss, attention)",
        ),
        "paper_lite0_procedural": (
            [lite0, cpu],
            ["--background_dir="],
            "Lite0 paper-faithful, procedural backgrounds",
        ),
        "identity_lite0": (
            [lite0, "configs/identity_loss.flags", cpu],
            [],
            "Lite0 paper-faithful + identity loss",
        ),
    }
    size = _ENSEMBLE_SIZE.value
    for backbone in _ENSEMBLE_BACKBONES[1:]:
        runs[f"paper_{backbone[-5:]}_{size}"] = (
            [lite0, cpu],
            [f"--backbone={backbone}", f"--image_size={size}"],
            None,  # an ensemble member only
        )
    workdirs, trained = {}, {}
    for run_name, (flagfiles, overrides, label) in runs.items():
        workdirs[run_name] = train_run(
            f"{run_name}_{steps}", flagfiles, common + overrides, out_dir
        )
        if label is None:
            continue
        plain, _ = add_pair(
            f"{label}, {steps} steps",
            f"{run_name}_{steps}",
            lambda: assemble.build_export_model([workdirs[run_name]]),
            _ADAPT_SINGLE,
        )
        trained[run_name] = plain["model_dir"]

    if stop_after("trained"):
        return

    # 3. Ensembles of three backbones at one image size, plain and adapted.
    def imagenet_ensemble():
        return assemble.build_export_model(
            backbones=_ENSEMBLE_BACKBONES, image_size=size
        )

    _, best = add_pair(
        f"ensemble Lite0+1+2 {size}px GAP, ImageNet",
        f"ensemble_imagenet_gap_{size}",
        imagenet_ensemble,
        _ADAPT_ENSEMBLE,
    )
    paper_runs = ["paper_lite0"] + [
        f"paper_{b[-5:]}_{size}" for b in _ENSEMBLE_BACKBONES[1:]
    ]
    add_pair(
        f"ensemble Lite0+1+2 {size}px paper-faithful, {steps} steps",
        f"ensemble_paper_{size}_{steps}",
        lambda: assemble.build_export_model([workdirs[r] for r in paper_runs]),
        _ADAPT_ENSEMBLE,
    )

    if stop_after("ensembles"):
        return

    # 4. Trained with the paper's losses plus the distillation loss: the
    # adapted ensemble labels the unlabelled photos (configs/distill.flags).
    distill_steps = _DISTILL_STEPS.value
    distill_common = common + [
        f"--steps={distill_steps}",
        f"--photos={csvs['photos_unlabelled']}",
        f"--teacher={best['model_dir']}",
    ]
    distill_flagfiles = [lite0, cpu, "configs/distill.flags"]
    distill_runs = {
        f"distill_lite0_top_{distill_steps}": [],
        # Ablations: the backbone frozen, as configs/grocery_cpu.flags has
        # it; and without the paper's parts (GAP pooling, no mask loss).
        "distill_lite0_800": [
            "--trainable_from=none",
            "--learning_rate=3e-3",
            "--steps=800",
        ],
        f"distill_lite0_gap_nomask_{distill_steps}": [
            "--pooling=gap",
            "--mask_loss_weight=0",
        ],
    }
    for backbone in _ENSEMBLE_BACKBONES[1:]:
        distill_runs[f"distill_{backbone[-5:]}_{size}_top_{distill_steps}"] = [
            f"--backbone={backbone}",
            f"--image_size={size}",
        ]
    for run_name, overrides in distill_runs.items():
        workdirs[run_name] = train_run(
            run_name, distill_flagfiles, distill_common + overrides, out_dir
        )
    distill_lite0 = f"distill_lite0_top_{distill_steps}"
    distilled, _ = add_pair(
        f"Lite0 paper-faithful + distilled from the adapted ensemble, "
        f"{distill_steps} steps",
        distill_lite0,
        lambda: assemble.build_export_model([workdirs[distill_lite0]]),
        _ADAPT_SINGLE,
    )
    add_pair(
        "the same, backbone frozen, 800 steps",
        "distill_lite0_800",
        lambda: assemble.build_export_model([workdirs["distill_lite0_800"]]),
        _ADAPT_SINGLE,
    )
    no_paper = f"distill_lite0_gap_nomask_{distill_steps}"
    add_pair(
        f"the same distilled, without the paper's parts (GAP, no mask "
        f"loss), {distill_steps} steps",
        no_paper,
        lambda: assemble.build_export_model([workdirs[no_paper]]),
        _ADAPT_SINGLE,
    )
    distill_members = [distill_lite0] + [
        f"distill_{b[-5:]}_{size}_top_{distill_steps}"
        for b in _ENSEMBLE_BACKBONES[1:]
    ]
    _, best_distilled = add_pair(
        f"ensemble Lite0+1+2 {size}px distilled, {distill_steps} steps",
        f"ensemble_distill_{size}_{distill_steps}",
        lambda: assemble.build_export_model(
            [workdirs[r] for r in distill_members]
        ),
        _ADAPT_ENSEMBLE,
    )

    if stop_after("distilled"):
        return

    # 5. Pictures and the table.
    queries = catalog_lib.read_queries(csvs[f"queries_{splits[0]}"])
    masks_png = draw_masks(
        {
            "unlabelled photos": trained["paper_lite0"],
            "procedural": trained["paper_lite0_procedural"],
            "distilled": distilled["model_dir"],
        },
        [q.path for q in spread(queries, 16)],
        os.path.join(out_dir, "masks.png"),
    )
    best_dir = best_distilled["model_dir"]
    identity = contract.model_identity(best_dir)
    sheet_png = draw_contact_sheet(
        best_dir,
        os.path.join(
            out_dir,
            "indexes",
            best_distilled["name"],
            str(identity["model_version"]),
        ),
        spread(queries, 12),
        os.path.join(out_dir, "contact_sheet.png"),
    )
    write_table(table_rows(results, splits), csvs, splits, out_dir)
    print(f"\nPictures: {masks_png}, {sheet_png}")
    print(f"Total {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
