r"""Does the mask decoder find the product? IoU against the true masks of the
synthetic in-the-wild queries, beside each model's retrieval.

  python -m bench.mask_iou [--out_dir=out/bench_mask_iou] [--steps=300] \
      [--num_products=32] [--exports=label=exported/beau_tf/1,...]

On a synthetic catalogue (`beau_tf.datasets.synthetic`, --image_size px),
whose query photos come with the true mask of their product
(`scenes.render_query_and_mask`: the product's silhouette less the hand,
occluder, product or shelf edge in front of it), the first
--scored_per_product photos of each product are scored and the next
--photos_per_product are the unlabelled photos of training and adaptation,
never scored. The bench trains, with `python -m beau_tf.train`
(configs/efficientnet_lite0.flags + grocery_cpu.flags + distill.flags at
--image_size, --steps steps):

  (a) paper      the paper's recipe (mask loss on pasted catalogue scenes,
                 attention pooling) plus distillation;
  (b) photomask  (a) + --photo_mask_loss_weight=1.0: the decoder also
                 learns from the unlabelled photos;
  (c) piles      (b) + --pile_probability=0.3;
  (d) no_mask_loss  (a) with --mask_loss_weight=0: the decoder, still
                 pooling the features, learns only from the retrieval
                 losses, through the attention.

Their teacher is an untrained Lite0 (GAP) adapted to the unlabelled photos,
as `python -m beau_tf.export --backbones=efficientnet_lite0
--adapt_photos=... --adapt_catalog=...` builds it. --exports adds any export
(a GroceryStore-trained one, say) as a row.

Each model's mask is its `serving_default` signature's `mask` output, on the
fitted square canvas; the true mask is fitted the same way
(`preprocess.fit_to_square`: a pixel is the product when at least half of it
is). Per query: IoU with the predicted mask thresholded at 0.5 and at half
its own peak (weak masks fall below 0.5 everywhere), and the share of the
predicted mask's mass inside the true mask; each the mean over queries.
MAP@7 (exact search, `query_multiscale`'s central zooms 1.0, 0.75, 0.5) on
the same queries stands beside. Reference rows: the whole frame as the mask
(its IoU is the product's share of the frame) and the central half (the
0.5 zoom's square).

Everything is kept under --out_dir (catalogue, teacher, runs, exports);
delete it to measure again. Writes bench/results/mask_iou.json (rows; the
seconds, wall and CPU, of each step). Figures: bench/RESULTS.md
("Training").
"""

import csv
import os
import resource
import subprocess
import time

from absl import flags
from absl import logging
import keras
import numpy as np
from PIL import Image

from beau_tf.adaptation import learn
from beau_tf.adaptation import self_training
from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.exporting import assemble
from beau_tf.serving import contract
from beau_tf.training import workdir as workdir_lib
from bench import harness
from bench import mask_scores
from bench import scoring

_OUT_DIR = flags.DEFINE_string(
    "out_dir", "out/bench_mask_iou", "Where everything is kept."
)
_NUM_PRODUCTS = flags.DEFINE_integer(
    "num_products", 32, "Products of the synthetic catalogue."
)
_SCORED = flags.DEFINE_integer(
    "scored_per_product", 4, "Query photos of each product scored."
)
_PHOTOS = flags.DEFINE_integer(
    "photos_per_product",
    4,
    "Further photos of each product, unlabelled, for distillation and the "
    "teacher's adaptation (never scored).",
)
_BACKGROUNDS = flags.DEFINE_integer(
    "num_backgrounds", 32, "Product-free scenes the catalogue is pasted on."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 128, "Side of the synthetic images, training and exports."
)
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps of each run.")
_TRAIN_FLAGS = flags.DEFINE_list(
    "train_flags",
    [],
    "More python -m beau_tf.train flags for every run (after the "
    "flagfiles), e.g. --batch_size=8.",
)
_EXPORTS = flags.DEFINE_list(
    "exports",
    [],
    "More models scored as rows: label=<export version folder> (or the "
    "folder alone, labelled by its path).",
)
_RECIPES = flags.DEFINE_list(
    "recipes",
    ["paper", "photomask", "photomask_piles", "no_mask_loss"],
    "The trained rows to run, of paper, photomask, photomask_piles and "
    "no_mask_loss.",
)
_TRAIN = flags.DEFINE_bool(
    "train",
    True,
    "Train the runs that are missing; --notrain scores finished runs only.",
)

SMOKE = {
    "out_dir": lambda work_dir: os.path.join(work_dir, "out"),
    "num_products": 4,
    "scored_per_product": 1,
    "photos_per_product": 2,
    "num_backgrounds": 2,
    "image_size": 64,
    "steps": 2,
    # One training run shows the path; the recipes differ by flags only.
    "recipes": ["photomask_piles"],
    "train_flags": [
        "--backbone=tiny",
        "--backbone_weights=none",
        "--trainable_from=",
        "--embedding_dim=16",
        "--batch_size=2",
        "--warmup_steps=1",
        "--checkpoint_every=2",
    ],
}

_FLAGFILES = (
    "configs/efficientnet_lite0.flags",
    "configs/grocery_cpu.flags",
    "configs/distill.flags",
)
# What each trained row changes in the recipe its label names (the first
# three as bench.grocery's DISTILL_RECIPES of the same names): run name ->
# (flags, label).
RECIPES = {
    "paper": ([], "(a) paper (mask loss on scenes, attention) + distillation"),
    "photomask": (
        ["--photo_mask_loss_weight=1.0"],
        "(b) (a) + mask learned from the unlabelled photos",
    ),
    "photomask_piles": (
        ["--photo_mask_loss_weight=1.0", "--pile_probability=0.3"],
        "(c) (b) + piles in the augmentation",
    ),
    "no_mask_loss": (
        ["--mask_loss_weight=0"],
        "(d) (a) without the mask loss: the attention learns from retrieval alone",
    ),
}
_TEACHER_BACKBONE = "efficientnet_lite0"


class Data:
    """The synthetic catalogue and its split: scored queries with their true
    masks, and unlabelled photos (other query indices of the same products)."""

    def __init__(self, out_dir: str):
        scored, photos = _SCORED.value, _PHOTOS.value
        self.catalogue = synthetic.write_synthetic_catalog(
            os.path.join(out_dir, "synthetic"),
            num_products=_NUM_PRODUCTS.value,
            queries_per_product=scored + photos,
            num_backgrounds=_BACKGROUNDS.value,
            image_size=_IMAGE_SIZE.value,
        )
        masks = synthetic.read_query_masks(self.catalogue.queries_csv)
        queries = catalog_lib.read_queries(self.catalogue.queries_csv)
        # The CSV lists each product's photos in query-index order.
        rank = {}
        self.scored, self.photos = [], []
        for query in queries:
            index = rank[query.item_id] = rank.get(query.item_id, -1) + 1
            (self.scored if index < scored else self.photos).append(query)
        self.true_masks = [
            np.asarray(Image.open(masks[q.path])) > 0 for q in self.scored
        ]
        self.photos_csv = os.path.join(out_dir, "photos.csv")
        with open(self.photos_csv, "w", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(["path"])
            writer.writerows([q.path] for q in self.photos)
        items = catalog_lib.list_catalog(self.catalogue.catalog_csv)
        self.catalogue_paths = [item.path for item in items]
        self.catalogue_ids = np.array([item.item_id for item in items])
        self._fitted = {}

    def fitted_masks(self, size: int) -> list[np.ndarray]:
        """The scored queries' true masks on an S x S canvas."""
        if size not in self._fitted:
            self._fitted[size] = [
                mask_scores.fit_true_mask(mask, size)
                for mask in self.true_masks
            ]
        return self._fitted[size]


class Clock:
    """Wall and CPU seconds (this process and its children) of each step."""

    def __init__(self):
        self.steps = {}

    def __call__(self, name: str, fn, *args):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        result = fn(*args)
        self.steps[name] = {
            "wall s": round(time.perf_counter() - wall, 1),
            "cpu s": round(_cpu_seconds() - cpu, 1),
        }
        return result


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def export_teacher(data: Data, out_dir: str, size: int) -> str:
    """The untrained Lite0 (GAP), adapted to the unlabelled photos."""
    name = f"teacher_{_TEACHER_BACKBONE}_{size}_adapted"
    existing = os.path.join(out_dir, "exported", name, "1")
    if os.path.isdir(existing):
        return existing
    model, members = assemble.build_export_model(
        backbones=[_TEACHER_BACKBONE], image_size=size
    )
    # At most one discriminant direction fewer than the products.
    recipe = self_training.SelfTrainingConfig(
        dim=min(80, len(data.catalogue_paths) - 1)
    )
    projection, record = learn.learn_projection(
        model,
        contract.DEFAULT_QUERY_ZOOMS,
        data.catalogue_paths,
        [q.path for q in data.photos],
        recipe,
        source=data.photos_csv,
    )
    model_dir = harness.export(
        model,
        os.path.join(out_dir, "exported"),
        name,
        members,
        projection=(projection.mean, projection.matrix),
        adaptation=record,
    )
    keras.backend.clear_session()
    return model_dir


def train_and_export(
    name: str, overrides: list[str], data: Data, teacher: str, out_dir: str
) -> str:
    """Trains one recipe with python -m beau_tf.train (unless finished) and
    exports it, plain; the export's version folder."""
    run = f"{name}_{_IMAGE_SIZE.value}_{_STEPS.value}"
    workdir = os.path.join(out_dir, "runs", run)
    if not workdir_lib.is_finished(workdir):
        if not _TRAIN.value:
            raise ValueError(
                f"{workdir} holds no finished run and --notrain was given."
            )
        command = harness.module_command(
            "beau_tf.train",
            *(f"--flagfile={harness.REPO / f}" for f in _FLAGFILES),
            f"--catalog={data.catalogue.catalog_csv}",
            f"--background_dir={data.catalogue.backgrounds_dir}",
            f"--photos={data.photos_csv}",
            f"--teacher={teacher}",
            f"--image_size={_IMAGE_SIZE.value}",
            f"--steps={_STEPS.value}",
            *_TRAIN_FLAGS.value,
            *overrides,
            f"--workdir={workdir}",
        )
        logging.info("Training %s: %s", run, " ".join(command))
        subprocess.run(command, check=True)
    existing = os.path.join(out_dir, "exported", run, "1")
    if os.path.isdir(existing):
        return existing
    model, members = assemble.build_export_model([workdir])
    model_dir = harness.export(
        model, os.path.join(out_dir, "exported"), run, members
    )
    keras.backend.clear_session()
    return model_dir


def model_row(label: str, model_dir: str, data: Data) -> dict:
    """Mask scores and MAP@7 of one export on the scored queries."""
    paths = [q.path for q in data.scored]
    masks = mask_scores.predicted_masks(model_dir, paths)
    row = {
        "model": label,
        **mask_scores.score_masks(masks, data.fitted_masks(masks.shape[1])),
    }
    catalogue = scoring.embed_paths(
        model_dir, data.catalogue_paths, contract.SIGNATURE_NAME
    )
    queries = scoring.embed_paths(
        model_dir, paths, contract.MULTISCALE_SIGNATURE_NAME
    )
    row["MAP@7 (zooms)"] = scoring.map_at_k(
        queries,
        np.array([q.item_id for q in data.scored]),
        catalogue,
        data.catalogue_ids,
    )
    row["export"] = model_dir
    return row


def reference_rows(data: Data) -> list[dict]:
    """Masks that know nothing of the photo: the whole frame, and the
    central half (the square of the 0.5 zoom)."""
    size = _IMAGE_SIZE.value
    true = data.fitted_masks(size)
    whole = np.ones((len(true), size, size), np.float32)
    centre = np.zeros_like(whole)
    centre[:, size // 4 : size - size // 4, size // 4 : size - size // 4] = 1
    return [
        {
            "model": label,
            **mask_scores.score_masks(masks, true),
            "MAP@7 (zooms)": "",
        }
        for label, masks in (
            ("reference: the whole frame", whole),
            ("reference: the central half", centre),
        )
    ]


def parse_exports(values: list[str]) -> list[tuple[str, str]]:
    """--exports as (label, folder) pairs."""
    pairs = []
    for value in values:
        label, _, folder = value.rpartition("=")
        if not os.path.isdir(folder):
            raise ValueError(
                f"--exports: {folder} is not a folder (an export's version "
                "folder, e.g. exported/beau_tf/1, expected)."
            )
        pairs.append((label or folder, folder))
    return pairs


def main(argv):
    del argv
    out_dir, size = _OUT_DIR.value, _IMAGE_SIZE.value
    extra = parse_exports(_EXPORTS.value)
    unknown = sorted(set(_RECIPES.value) - set(RECIPES))
    if unknown:
        raise ValueError(
            f"--recipes names {unknown}; choose among {list(RECIPES)}."
        )
    clock = Clock()
    data = clock("catalogue", Data, out_dir)
    teacher = clock("teacher", export_teacher, data, out_dir, size)
    models = [
        (
            "teacher: untrained Lite0 GAP, adapted (its decoder untrained)",
            teacher,
        )
    ]
    for name in _RECIPES.value:
        overrides, label = RECIPES[name]
        model_dir = clock(
            name, train_and_export, name, overrides, data, teacher, out_dir
        )
        models.append((f"{label}, {_STEPS.value} steps", model_dir))
    models += extra
    rows = reference_rows(data)
    for label, model_dir in models:
        rows.append(clock(f"score {label}", model_row, label, model_dir, data))
    columns = [
        "model",
        "IoU@0.5",
        "IoU@half-peak",
        "mass inside",
        "predicted area",
        "MAP@7 (zooms)",
    ]
    harness.print_table(rows, columns)
    print(f"Seconds: {clock.steps}")
    harness.write_results(
        rows,
        scored_queries=len(data.scored),
        unlabelled_photos=len(data.photos),
        products=len(data.catalogue_paths),
        true_area=float(np.mean([m.mean() for m in data.fitted_masks(size)])),
        steps_seconds=clock.steps,
    )


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
