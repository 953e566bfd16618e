r"""Off-the-shelf ImageNet baselines on GroceryStore, through beau_tf's pipeline.

  python bench/grocery_baselines.py \
      [--dataset_dir=../shared/data/grocery-store/dataset] \
      [--out_dir=/tmp/grocery_baselines] \
      [--backbones=efficientnet_lite0,efficientnet_lite2] \
      [--poolings=gap,gem,mac]

No training: for each backbone x pooling, an extractor with ImageNet weights
is exported as a SavedModel (`beau_tf.exporting`), the 81 iconic images are
embedded and indexed with it (`beau_tf.indexing`), and the 296 `val` in-store
photos are embedded and scored against the index (`beau_tf.searching`), the
same path as `python -m beau_tf.export / index / evaluate`. One table, exact
search, overall and per group ("packages", "fruit_vegetables").

Attention pooling is left out: with an untrained mask decoder it weights the
feature map at random. The exported preprocessing pads to a square (keeping
the aspect ratio) instead of centre-cropping, so the numbers need not match
the reference measured with a centre crop (Lite0 at 224 px, GAP: MAP@7
0.486, recall@1 0.362; Lite2 at 260 px, GAP: 0.511 / 0.375).
"""

import os
import time

from absl import app
from absl import flags
from absl import logging
import keras

from beau_tf import evaluation
from beau_tf import exporting
from beau_tf import indexing
from beau_tf import searching
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import grocery
from beau_tf.models import extractor as extractor_lib

_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir",
    "../shared/data/grocery-store/dataset",
    "GroceryStoreDataset's dataset/ folder.",
)
_OUT_DIR = flags.DEFINE_string(
    "out_dir",
    "/tmp/grocery_baselines",
    "Where the CSVs, SavedModels and indexes are written.",
)
_BACKBONES = flags.DEFINE_list(
    "backbones",
    ["efficientnet_lite0", "efficientnet_lite2"],
    "Backbones with ImageNet weights available offline.",
)
_POOLINGS = flags.DEFINE_list(
    "poolings", ["gap", "gem", "mac"], "Poolings without trained weights."
)

# The resolutions the EfficientNet-Lite checkpoints were trained at.
_IMAGE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite2": 260}
_DEFAULT_IMAGE_SIZE = 224
_GROUPS = ("packages", "fruit_vegetables")
_K = 7


def evaluate_baseline(
    backbone: str, pooling: str, csvs: dict[str, str], out_dir: str
) -> dict:
    """Exports, indexes and scores one untrained extractor.

    Args:
      backbone: a key of `beau_tf.models.backbones.BACKBONES` with ImageNet
        weights.
      pooling: "gap", "gem" or "mac".
      csvs: `grocery.convert_grocery_store`'s output paths.
      out_dir: the folder holding `exported/` and `indexes/`.

    Returns:
      The exact-search row of `searching.evaluate`, with "model", "pooling",
      "image_size" and "seconds" added.
    """
    start = time.perf_counter()
    image_size = _IMAGE_SIZES.get(backbone, _DEFAULT_IMAGE_SIZE)
    config = extractor_lib.ExtractorConfig(
        backbone=backbone,
        backbone_weights="imagenet",
        image_size=image_size,
        pooling=pooling,
    )
    model = extractor_lib.build_extractor(config)
    name = f"{backbone}_{pooling}"
    model_dir = exporting.export_saved_model(
        model,
        image_size,
        os.path.join(out_dir, "exported"),
        name,
        members=[{"extractor": config.to_dict()}],
    )
    del model
    keras.backend.clear_session()

    items = catalog_lib.list_catalog(csvs["catalog"])
    embedded = indexing.embed_catalog_shard(
        model_dir, exporting.model_identity(model_dir), items
    )
    # One index per exported version, so reruns never collide.
    index_dir = os.path.join(
        out_dir, "indexes", name, os.path.basename(model_dir)
    )
    indexing.build_and_save(embedded, index_dir)

    # As python -m beau_tf.evaluate does.
    bundle = indexing.load_index(index_dir)
    queries = catalog_lib.read_queries(csvs["queries_val"])
    embedded_queries = searching.embed_locally(
        model_dir, bundle, [q.path for q in queries]
    )
    true_id = {q.path: q.item_id for q in queries}
    true_ids = [true_id[path] for path in embedded_queries.paths]
    group_of = searching.read_groups(csvs["coarse"])
    groups = [group_of.get(item_id, "other") for item_id in true_ids]
    rows = searching.evaluate(
        bundle, embedded_queries.embeddings, true_ids, groups, k=_K
    )
    exact = next(row for row in rows if row["method"] == "exact")
    seconds = time.perf_counter() - start
    logging.info("%s: %.0f s, %s", name, seconds, exact)
    return {
        **exact,
        "model": backbone,
        "pooling": pooling,
        "image_size": image_size,
        "seconds": seconds,
    }


def table_row(result: dict) -> dict:
    """Flattens one result into the table's columns."""
    row = {
        "model": f"{result['model']} ({result['image_size']} px)",
        "pooling": result["pooling"],
        "queries": result["num_queries"],
        "MAP@7 (hits)": result[f"map@{_K}_hits"],
        "MAP@7 (min_relevant)": result[f"map@{_K}_min_relevant"],
        "recall@1": result["recall@1"],
        "recall@7": result[f"recall@{_K}"],
    }
    for group in _GROUPS:
        metrics = result.get("by_group", {}).get(group)
        if metrics is None:
            continue
        row[f"{group} MAP@7 (hits)"] = metrics[f"map@{_K}_hits"]
        row[f"{group} recall@1"] = metrics["recall@1"]
        row[f"{group} queries"] = metrics["num_queries"]
    return row


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
    out_dir = _OUT_DIR.value
    csvs = grocery.convert_grocery_store(
        _DATASET_DIR.value, os.path.join(out_dir, "csv")
    )
    rows = []
    for backbone in _BACKBONES.value:
        for pooling in _POOLINGS.value:
            result = evaluate_baseline(backbone, pooling, csvs, out_dir)
            rows.append(table_row(result))
    columns = ["model", "pooling", "MAP@7 (hits)", "MAP@7 (min_relevant)"]
    columns += ["recall@1", "recall@7"]
    for group in _GROUPS:
        columns += [f"{group} MAP@7 (hits)", f"{group} recall@1"]
    first = rows[0]
    print(
        f"GroceryStore val: {first['queries']} queries "
        + ", ".join(
            f"{first[f'{g} queries']} {g}"
            for g in _GROUPS
            if f"{g} queries" in first
        )
        + "; catalogue of 81 iconic images; exact search, no training."
    )
    print(evaluation.format_table(rows, columns, markdown=True))


if __name__ == "__main__":
    app.run(main)
