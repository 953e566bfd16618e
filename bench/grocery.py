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
    photos; Lite0 under each recipe of DISTILL_RECIPES (without the paper's
    mask loss and attention pooling; the paper's; + the mask learned from
    the photos; + piles), each with central zooms and with mask-guided
    views (--mask_views), and the ensemble of the three distilled backbones
    of --ensemble_recipe, and of its Lite0 and Lite1 alone (the service's
    recipe in the README).

Cost columns (--cost_rounds, on by default): every exported row is timed
side by side in alternating rounds in this one process: ms per query of
`query_multiscale` and of `serving_default` at batch 1, and catalogue
images/s at batch 32 (decode included, as `python -m beau_tf.index` runs).

Honesty: training reads the 81 catalogue images and, as backgrounds, the
unlabelled train/ photos less dev2 (`photos_unlabelled.csv`); adaptation
and the distillation loss read the same photos, unlabelled. Labels of the scored splits are read only
to score.

The run resumes: each finished row is kept in <out_dir>/rows/<name>.json and
each training run in <out_dir>/runs/<name>_<steps> (an interrupted one resumes
from its last checkpoint); delete them to measure again.
Writes <out_dir>/table.md, <out_dir>/masks.png (the trained decoders' masks on
query photos), <out_dir>/views.png (the boxes of the mask-guided views) and
<out_dir>/contact_sheet.png (queries, multiscale, and their
top 5 with the distilled ensemble, adapted; correct ones marked OK), and the
table's rows to bench/results/grocery.json (grocery-<splits>.json for other
--splits). Says it is skipped when the dataset folder is absent. Figures:
bench/RESULTS.md ("Training", "Export", "Search").

--groups runs some groups of rows (baselines, trained, ensembles, distilled,
pictures); the table holds the rows run (each cached, as above). --smoke runs
the baselines, Lite0 only, on a synthetic catalogue laid out as GroceryStore
(`harness.write_grocery_like`): the other groups train a dozen models and
export twenty more, minutes at any size.
"""

import dataclasses
import functools
import json
import os
import pathlib
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
_GROUPS_RUN = flags.DEFINE_multi_enum(
    "groups",
    ["baselines", "trained", "ensembles", "distilled", "pictures"],
    ["baselines", "trained", "ensembles", "distilled", "pictures"],
    "The groups of rows to run (a group needs no other's rows: the teacher "
    "of the distilled group is exported whether or not the ensembles group "
    "runs). Repeat the flag for several groups.",
)
_TRAIN = flags.DEFINE_bool(
    "train",
    True,
    "Train the runs a row needs; --notrain uses finished runs only (under "
    "<out_dir>/runs/) and stops with a clear error at a missing one.",
)
_ENSEMBLE_RECIPE = flags.DEFINE_enum(
    "ensemble_recipe",
    "paper",
    ["gap_nomask", "paper", "photomask", "photomask_piles", "none"],
    "The distillation recipe (DISTILL_RECIPES) of the distilled group's "
    "Lite1 and Lite2, ensembled with Lite0's run of the same recipe; none "
    "leaves the distilled ensemble out (Lite0 rows only).",
)
_COST_ROUNDS = flags.DEFINE_integer(
    "cost_rounds",
    3,
    "Alternating rounds of the cost columns (every exported row timed side "
    "by side in this one process); 0 leaves the columns out.",
    lower_bound=0,
)
_MASK_VIEWS = flags.DEFINE_list(
    "mask_views",
    ["0.25"],
    "Paddings of the mask-guided query views of the distilled group's "
    "mask-view rows (python -m beau_tf.export --query_mask_views).",
)

SMOKE = {
    "dataset_dir": lambda work_dir: harness.write_grocery_like(
        os.path.join(work_dir, "grocery")
    ),
    "out_dir": lambda work_dir: os.path.join(work_dir, "out"),
    "baselines": ["efficientnet_lite0"],
    "groups": ["baselines"],
    "cost_rounds": 1,
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
    views: "ViewsOf | None" = None,
) -> str:
    """Exports `model` under <out_dir>/exported/<name>.

    `adaptation`: `(projection, record)` from `learn.learn_projection`;
    `views`: its query views (the defaults when None).
    """
    views = views or ViewsOf()
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
        query_zooms=views.zooms,
        query_mask_views=views.mask_views,
    )


@dataclasses.dataclass(frozen=True)
class ViewsOf:
    """The query views an export's `query_multiscale` averages over."""

    zooms: tuple[float, ...] = contract.DEFAULT_QUERY_ZOOMS
    mask_views: tuple[float, ...] = ()


def plain_and_adapted(
    model: keras.Model,
    name: str,
    csvs: dict,
    recipe: self_training.SelfTrainingConfig,
    out_dir: str,
    members: list[dict] = (),
    views: ViewsOf = ViewsOf(),
) -> tuple[str, str]:
    """Exports `model` as it is and adapted to the unlabelled photos (the
    same model, so the rows differ by the adaptation alone), with `views`
    as its query views (the adaptation learns through them); frees its
    graph.
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
                views.zooms,
                [i.path for i in catalog_lib.list_catalog(csvs["catalog"])],
                catalog_lib.list_photos(csvs["photos_unlabelled"]),
                recipe,
                source=csvs["photos_unlabelled"],
                mask_views=views.mask_views,
            )
        model_dirs[variant] = export(
            model, f"{name}_{variant}", out_dir, members, adaptation, views
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
    if not _TRAIN.value:
        raise ValueError(
            f"{workdir} holds no finished run and --notrain was given; train "
            "it (drop --notrain) or put a finished run there."
        )
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


def draw_views(model_dir: str, paths: list[str], out_path: str) -> str:
    """Each photo with the mask of the whole photo and the mask-guided views
    `query_multiscale` cut (boxes drawn), as that signature chose them."""
    loaded = tf.saved_model.load(model_dir)
    serve = loaded.signatures[contract.SIGNATURE_NAME]
    multiscale = loaded.signatures[contract.MULTISCALE_SIGNATURE_NAME]
    cells, captions = [], []
    for path in paths:
        with open(path, "rb") as stream:
            image_bytes = tf.constant([stream.read()])
        mask = np.asarray(serve(images=image_bytes)["mask"])[0, ..., 0]
        boxes = np.asarray(
            multiscale(images=image_bytes)[contract.VIEW_BOXES_OUTPUT]
        )[0]
        canvas = pictures.overlay_mask(served_pixels(path, mask.shape[0]), mask)
        cells.append(pictures.draw_boxes(canvas, boxes))
        sides = ", ".join(f"{box[2] - box[0]:.2f}" for box in boxes)
        captions.append(f"{os.path.basename(path)}: side {sides}")
    grid = pictures.image_grid(cells, captions, columns=4)
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


def table_rows(
    results: list[tuple[str, dict, str]],
    splits: list[str],
    costs: dict[str, dict] | None = None,
) -> list:
    """One row per (model, query view): MAP@7, R@1 and R@7 on each split,
    MAP@7 per group (packages, fruit and vegetables) on each split, then
    the model's cost columns (`measure_costs`) where measured."""
    rows = []
    for label, views, model_dir in results:
        for view in ("single", "multiscale"):
            line = {"model": label, "queries": view}
            for split in splits:
                row = views[split][view]
                line[f"{split} MAP@7"] = row[f"map@{_K}_hits"]
                line[f"{split} R@1"] = row["recall@1"]
                line[f"{split} R@7"] = row[f"recall@{_K}"]
            for split in splits:
                by_group = views[split][view].get("by_group", {})
                for group in _GROUPS:
                    line[f"{split} {group} MAP@7"] = by_group.get(
                        group, {}
                    ).get(f"map@{_K}_hits", "")
            if costs:
                line.update(costs[model_dir])
            rows.append(line)
    return rows


# The cost columns: what a query costs at batch 1 with each signature, and
# catalogue embedding at batch 32.
_COST_QUERIES = 8
_COST_BATCH = 32


def measure_costs(
    model_dirs: list[str], csvs: dict, split: str, rounds: int
) -> dict[str, dict]:
    """Times every export side by side: ms per query of `query_multiscale`
    and of `serving_default` at batch 1 (`_COST_QUERIES` photos spread over
    `split`) and catalogue images/s at batch `_COST_BATCH`, each the median
    of `rounds` alternating rounds (one process; the load moves, the ratios
    hold). Returns model_dir -> its columns."""
    queries = catalog_lib.read_queries(csvs[f"queries_{split}"])
    photos = [
        pathlib.Path(q.path).read_bytes()
        for q in spread(queries, _COST_QUERIES)
    ]
    catalogue = [
        pathlib.Path(item.path).read_bytes()
        for item in catalog_lib.list_catalog(csvs["catalog"])
    ][:_COST_BATCH]
    model_dirs = list(dict.fromkeys(model_dirs))  # each once, in order
    contenders = {}
    for model_dir in model_dirs:
        signatures = tf.saved_model.load(model_dir).signatures
        for name in (
            contract.MULTISCALE_SIGNATURE_NAME,
            contract.SIGNATURE_NAME,
        ):
            contenders[(model_dir, name)] = functools.partial(
                harness.ms_per_query, signatures[name], photos
            )
        contenders[(model_dir, "catalogue")] = functools.partial(
            harness.images_per_second,
            signatures[contract.SIGNATURE_NAME],
            catalogue,
        )
    measured = harness.side_by_side(contenders, rounds, warmup=True)
    return {
        model_dir: {
            "ms/query multiscale": measured.median(
                (model_dir, contract.MULTISCALE_SIGNATURE_NAME)
            ),
            "ms/query single": measured.median(
                (model_dir, contract.SIGNATURE_NAME)
            ),
            f"catalogue img/s (batch {_COST_BATCH})": measured.median(
                (model_dir, "catalogue")
            ),
        }
        for model_dir in model_dirs
    }


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


class Rows:
    """The table's rows, each scored once and kept in <out_dir>/rows/."""

    def __init__(self, csvs: dict, splits: list[str], out_dir: str):
        self.csvs, self.splits, self.out_dir = csvs, splits, out_dir
        self.tag = "_".join(splits)
        # (label, views, model_dir) of each row, in table order.
        self.results: list[tuple[str, dict, str]] = []

    def add(self, label: str, name: str, model_dir) -> dict:
        """Scores `model_dir()` (called only when the row is not cached)."""
        result = cached(
            self.out_dir,
            f"{self.tag}_{name}",
            lambda: score_model(
                name, model_dir(), self.csvs, self.splits, self.out_dir
            ),
        )
        self.results.append((label, result["views"], result["model_dir"]))
        return result

    def add_pair(
        self, label: str, name: str, build, recipe, views=ViewsOf()
    ) -> tuple[dict, dict]:
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
                                model,
                                name,
                                self.csvs,
                                recipe,
                                self.out_dir,
                                members,
                                views,
                            ),
                        )
                    )
                return exported[variant]

            return get

        plain = self.add(label, f"{name}_plain", model_dir("plain"))
        adapted = self.add(
            f"{label} + adapted", f"{name}_adapted", model_dir("adapted")
        )
        return plain, adapted


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    dataset_dir = harness.find_grocery(_DATASET_DIR.value)
    if dataset_dir is None:
        return
    started = time.perf_counter()
    out_dir, splits, steps = _OUT_DIR.value, _SPLITS.value, _STEPS.value
    groups = set(_GROUPS_RUN.value)
    csvs = grocery.convert_grocery_store(
        dataset_dir, os.path.join(out_dir, "csv")
    )
    for split in splits:
        if f"queries_{split}" not in csvs:
            raise ValueError(f"{dataset_dir} has no {split} split.")
    rows = Rows(csvs, splits, out_dir)
    common = [
        f"--catalog={csvs['catalog']}",
        f"--background_dir={csvs['photos_unlabelled']}",
    ]
    size = _ENSEMBLE_SIZE.value
    models = {}
    if "baselines" in groups:
        baseline_rows(rows)
    if "trained" in groups:
        models.update(trained_rows(rows, common, steps, size))
    if "ensembles" in groups:
        ensemble_rows(rows, common, steps, size)
    if "distilled" in groups:
        teacher = teacher_export(rows, size)
        models.update(distilled_rows(rows, common, teacher, size))
    pictures_written = []
    if "pictures" in groups:
        pictures_written = draw_pictures(rows, models, out_dir, splits)
    costs = None
    if _COST_ROUNDS.value:
        costs = measure_costs(
            [model_dir for _, _, model_dir in rows.results],
            csvs,
            splits[0],
            _COST_ROUNDS.value,
        )
    write_table(table_rows(rows.results, splits, costs), csvs, splits, out_dir)
    if pictures_written:
        print(f"\nPictures: {', '.join(pictures_written)}")
    print(f"Total {time.perf_counter() - started:.0f} s.")


def baseline_rows(rows: Rows) -> None:
    """Off-the-shelf ImageNet backbones: the baseline, plain and adapted."""
    for backbone in _BASELINES.value:
        size = _NATIVE_SIZES[backbone]
        rows.add_pair(
            f"{backbone} {size}px GAP, ImageNet",
            f"{backbone}_{size}_gap",
            lambda: assemble.build_export_model(
                backbones=[backbone], image_size=size
            ),
            _ADAPT_SINGLE,
        )


def trained_runs(size: int) -> dict:
    """Runs of the catalogue alone (the paper, shortened for this CPU by
    configs/grocery_cpu.flags): name -> (flagfiles, overrides, label)."""
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
    for backbone in _ENSEMBLE_BACKBONES[1:]:
        runs[f"paper_{backbone[-5:]}_{size}"] = (
            [lite0, cpu],
            [f"--backbone={backbone}", f"--image_size={size}"],
            None,  # an ensemble member only
        )
    return runs


def trained_rows(rows: Rows, common: list, steps: int, size: int) -> dict:
    """Trained with python -m beau_tf.train; backgrounds never hold dev2.
    Returns the plain exports of the labelled runs, for the pictures."""
    exports = {}
    for run_name, (flagfiles, overrides, label) in trained_runs(size).items():
        workdir = train_run(
            f"{run_name}_{steps}",
            flagfiles,
            common + [f"--steps={steps}"] + overrides,
            rows.out_dir,
        )
        if label is None:
            continue
        plain, _ = rows.add_pair(
            f"{label}, {steps} steps",
            f"{run_name}_{steps}",
            lambda: assemble.build_export_model([workdir]),
            _ADAPT_SINGLE,
        )
        exports[run_name] = plain["model_dir"]
    return exports


def teacher_export(rows: Rows, size: int) -> str:
    """The untrained ensemble, adapted (configs/recommended.flags): step 1
    of the recipe and the distillation's teacher, the ensembles group's
    export when that group ran (its rows are that group's)."""
    name = f"ensemble_imagenet_gap_{size}"

    def build():
        return assemble.build_export_model(
            backbones=_ENSEMBLE_BACKBONES, image_size=size
        )

    existing = os.path.join(rows.out_dir, "exported", f"{name}_adapted", "1")
    if os.path.isdir(existing):
        return existing
    model, members = build()
    return plain_and_adapted(
        model, name, rows.csvs, _ADAPT_ENSEMBLE, rows.out_dir, members
    )[1]


def ensemble_rows(rows: Rows, common: list, steps: int, size: int) -> None:
    """Ensembles of three backbones at one image size, plain and adapted."""
    rows.add_pair(
        f"ensemble Lite0+1+2 {size}px GAP, ImageNet",
        f"ensemble_imagenet_gap_{size}",
        lambda: assemble.build_export_model(
            backbones=_ENSEMBLE_BACKBONES, image_size=size
        ),
        _ADAPT_ENSEMBLE,
    )
    runs = trained_runs(size)
    members = ["paper_lite0"] + [
        f"paper_{backbone[-5:]}_{size}" for backbone in _ENSEMBLE_BACKBONES[1:]
    ]
    workdirs = [
        train_run(
            f"{run_name}_{steps}",
            runs[run_name][0],
            common + [f"--steps={steps}"] + runs[run_name][1],
            rows.out_dir,
        )
        for run_name in members
    ]
    rows.add_pair(
        f"ensemble Lite0+1+2 {size}px paper-faithful, {steps} steps",
        f"ensemble_paper_{size}_{steps}",
        lambda: assemble.build_export_model(workdirs),
        _ADAPT_ENSEMBLE,
    )


# The distillation recipes of the distilled group (after
# configs/efficientnet_lite0.flags, grocery_cpu.flags and distill.flags):
# name -> (overrides, label). Each adds one thing to the row before it.
DISTILL_RECIPES = {
    "gap_nomask": (
        ["--pooling=gap", "--mask_loss_weight=0"],
        "without the paper's parts (GAP pooling, no mask loss)",
    ),
    "paper": ([], "the paper's parts (mask loss on scenes, attention pooling)"),
    "photomask": (
        ["--photo_mask_loss_weight=1.0"],
        "+ the mask learned from the unlabelled photos",
    ),
    "photomask_piles": (
        ["--photo_mask_loss_weight=1.0", "--pile_probability=0.3"],
        "+ the mask learned from the photos + piles in the augmentation",
    ),
}


def distilled_rows(rows: Rows, common: list, teacher: str, size: int) -> dict:
    """Distilled from the teacher on the unlabelled photos (no label read):
    Lite0 under each recipe, central zooms and mask-guided views; the three
    backbones under --ensemble_recipe, ensembled. Returns the exports the
    pictures show: each recipe's plain export, with and without mask views,
    and the ensemble's adapted ones."""
    steps = _DISTILL_STEPS.value
    distill_common = common + [
        f"--steps={steps}",
        f"--photos={rows.csvs['photos_unlabelled']}",
        f"--teacher={teacher}",
    ]
    flagfiles = [
        "configs/efficientnet_lite0.flags",
        "configs/grocery_cpu.flags",
        "configs/distill.flags",
    ]
    mask_views = ViewsOf(mask_views=tuple(map(float, _MASK_VIEWS.value)))
    workdirs, exports = {}, {}
    for recipe, (overrides, label) in DISTILL_RECIPES.items():
        name = f"distill_lite0_{recipe}_{steps}"
        workdirs[recipe] = train_run(
            name, flagfiles, distill_common + overrides, rows.out_dir
        )
        plain, _ = rows.add_pair(
            f"Lite0 distilled, {label}, central zooms",
            name,
            lambda: assemble.build_export_model([workdirs[recipe]]),
            _ADAPT_SINGLE,
        )
        exports[recipe] = plain["model_dir"]
        if recipe != "gap_nomask":  # the mask views need a trained decoder
            masked, _ = rows.add_pair(
                f"Lite0 distilled, {label}, zooms + mask-guided views "
                f"{mask_views.mask_views}",
                f"{name}_maskviews",
                lambda: assemble.build_export_model([workdirs[recipe]]),
                _ADAPT_SINGLE,
                mask_views,
            )
            exports[f"{recipe}_maskviews"] = masked["model_dir"]
    last = _ENSEMBLE_RECIPE.value
    if last == "none":
        return exports
    overrides = DISTILL_RECIPES[last][0]
    members = [workdirs[last]] + [
        train_run(
            f"distill_{backbone[-5:]}_{size}_{last}_{steps}",
            flagfiles,
            distill_common
            + overrides
            + [f"--backbone={backbone}", f"--image_size={size}"],
            rows.out_dir,
        )
        for backbone in _ENSEMBLE_BACKBONES[1:]
    ]
    ensemble_views = [(ViewsOf(), "", "central zooms")]
    if last != "gap_nomask":  # the mask views need a trained decoder
        ensemble_views.append(
            (mask_views, "_maskviews", "zooms + mask-guided views")
        )
    for views, suffix, words in ensemble_views:
        _, adapted = rows.add_pair(
            f"ensemble Lite0+1+2 {size}px distilled ({last}), {words}",
            f"ensemble_distill_{size}_{last}_{steps}{suffix}",
            lambda: assemble.build_export_model(members),
            _ADAPT_ENSEMBLE,
            views,
        )
        exports[f"ensemble{suffix}"] = adapted["model_dir"]
    # Lite2 left out: the service recipe's architecture (the README's
    # service row also trains its students with --photo_photometric, which
    # this bench does not). On --runtime=openvino-bf16 it served 2.9-3.2x
    # the requests/s of the three on TensorFlow (bench.serve_load --recipe,
    # five runs).
    rows.add_pair(
        f"ensemble Lite0+1 {size}px distilled ({last}), central zooms",
        f"ensemble01_distill_{size}_{last}_{steps}",
        lambda: assemble.build_export_model(members[:2]),
        _ADAPT_ENSEMBLE,
    )
    return exports


def draw_pictures(
    rows: Rows, exports: dict, out_dir: str, splits: list[str]
) -> list[str]:
    """masks.png (the decoders of the distilled group, the paper's beside
    the one that also learned from the photos), views.png (the views the
    mask chose: the distilled ensemble's, else Lite0's) and
    contact_sheet.png (the best ensemble, adapted)."""
    queries = catalog_lib.read_queries(rows.csvs[f"queries_{splits[0]}"])
    photos = [q.path for q in spread(queries, 16)]
    written = []
    decoders = {
        label: exports[recipe]
        for recipe, label in (
            ("paper", "paper (scenes only)"),
            ("photomask", "+ photos"),
            ("photomask_piles", "+ photos + piles"),
        )
        if recipe in exports
    }
    if decoders:
        written.append(
            draw_masks(decoders, photos, os.path.join(out_dir, "masks.png"))
        )
    # The views of the best measured export that has mask views.
    viewed = next(
        (
            exports[name]
            for name in (
                "ensemble_maskviews",
                "photomask_maskviews",
                "paper_maskviews",
            )
            if name in exports
        ),
        None,
    )
    if viewed:
        written.append(
            draw_views(viewed, photos[::2], os.path.join(out_dir, "views.png"))
        )
    best = exports.get("ensemble_maskviews") or exports.get("ensemble")
    if best:
        identity = contract.model_identity(best)
        written.append(
            draw_contact_sheet(
                best,
                os.path.join(
                    out_dir,
                    "indexes",
                    identity["model_name"],
                    str(identity["model_version"]),
                ),
                spread(queries, 12),
                os.path.join(out_dir, "contact_sheet.png"),
            )
        )
    return written


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
