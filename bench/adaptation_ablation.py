r"""What each choice of the adaptation recipe gives, on GroceryStore val and dev2.

  python bench/adaptation_ablation.py [--bench_dir=out/bench_grocery] \
      [--models=efficientnet_lite0_224_gap,ensemble_imagenet_gap_224]

Reads the plain (unadapted) exports that `bench/grocery.py` wrote under
<bench_dir>/exported/<model>_plain/1 and its CSVs, embeds the catalogue
(`serving_default`), the val and dev2 photos and the unlabelled pool
(`query_multiscale`, and single view for one row) once, caching them in
<bench_dir>/ablation/<model>.npz, then runs `self_training.self_train` with
each variant of the recipe and scores exact search with the learned
projection applied to both sides, as the adapted export serves it. One row per
variant: val and dev2 MAP@7. No pool label is read.
"""

import dataclasses
import os
import time

from absl import app
from absl import flags
import numpy as np

from beau_tf.adaptation import self_training
from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import metrics
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib

_BENCH_DIR = flags.DEFINE_string(
    "bench_dir", "out/bench_grocery", "bench/grocery.py's --out_dir."
)
_MODELS = flags.DEFINE_list(
    "models",
    ["efficientnet_lite0_224_gap", "ensemble_imagenet_gap_224"],
    "Plain exports of bench/grocery.py to adapt.",
)
_K = 7
_DEFAULT = self_training.SelfTrainingConfig()
_HARD = dict(assignment="hard", catalogue_weight=1.0, rounds=2, ridge=30.0)


def variants(ensemble: bool) -> list[tuple[str, dict, str]]:
    """(label, SelfTrainingConfig changes from the default, pool view)."""
    base = dict(pca_dim=512, ridge=1.0) if ensemble else {}
    rows = [
        (
            "hard nearest-product labels, catalogue weight 1, 2 rounds, ridge 30",
            _HARD,
            "multi",
        ),
        (
            "Sinkhorn labels, catalogue weight 1, 3 rounds, ridge 30",
            dict(catalogue_weight=1.0, rounds=3, ridge=30.0),
            "multi",
        ),
        (
            "Sinkhorn, catalogue weight 5, 3 rounds, ridge 30",
            dict(rounds=3, ridge=30.0),
            "multi",
        ),
        ("recipe, 1 round", dict(base, rounds=1), "multi"),
        ("recipe, 3 rounds", dict(base, rounds=3), "multi"),
        ("recipe (5 rounds)", base, "multi"),
        ("recipe, 40 dimensions", dict(base, dim=40), "multi"),
        ("recipe, 60 dimensions", dict(base, dim=60), "multi"),
        ("recipe, learned from single-view photos", base, "single"),
        (
            "recipe, catalogue weight 1",
            dict(base, catalogue_weight=1.0),
            "multi",
        ),
        ("recipe, temperature 0.1", dict(base, temperature=0.1), "multi"),
    ]
    if ensemble:
        rows.append(("recipe without PCA, ridge 3", dict(ridge=3.0), "multi"))
    return rows  # fmt: skip


def embed(model_dir: str, paths: list[str], signature: str) -> np.ndarray:
    embeddings, kept = embedding_lib.embed_files(
        embedding_lib.load_embed_fn(model_dir, signature),
        paths,
        description=f"{os.path.basename(os.path.dirname(model_dir))}",
    )
    if len(kept) != len(paths):
        raise ValueError(f"{len(paths) - len(kept)} images not embedded.")
    return embeddings


def load_embeddings(model: str, bench_dir: str) -> dict:
    """Catalogue, split and pool embeddings of a plain export, cached."""
    path = os.path.join(bench_dir, "ablation", f"{model}.npz")
    if os.path.exists(path):
        with np.load(path) as cached:
            return dict(cached)
    model_dir = os.path.join(bench_dir, "exported", f"{model}_plain", "1")
    csv_dir = os.path.join(bench_dir, "csv")
    items = catalog_lib.list_catalog(os.path.join(csv_dir, "catalog.csv"))
    multi, single = contract.MULTISCALE_SIGNATURE_NAME, contract.SIGNATURE_NAME
    values = {
        "catalogue": embed(model_dir, [i.path for i in items], single),
        "catalogue_ids": np.array([i.item_id for i in items]),
    }
    pool = catalog_lib.list_photos(
        os.path.join(csv_dir, "photos_unlabelled.csv")
    )
    values["pool_multi"] = embed(model_dir, pool, multi)
    values["pool_single"] = embed(model_dir, pool, single)
    for split in ("val", "dev2"):
        queries = catalog_lib.read_queries(
            os.path.join(csv_dir, f"queries_{split}.csv")
        )
        values[split] = embed(model_dir, [q.path for q in queries], multi)
        values[f"{split}_ids"] = np.array([q.item_id for q in queries])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **values)
    return values


def map_at_7(queries, catalogue, true_ids, catalogue_ids) -> float:
    indices, _ = metrics.rank_exact(queries, catalogue, _K)
    ranked = [[catalogue_ids[i] for i in row] for row in indices]
    scores = metrics.evaluate_rankings(ranked, [{t} for t in true_ids], k=_K)
    return scores[f"map@{_K}_hits"]


def score(values: dict, projection=None) -> tuple[float, float]:
    space = projection or (lambda x: x)
    catalogue = space(values["catalogue"]).astype(np.float32)
    return tuple(
        map_at_7(
            space(values[split]).astype(np.float32),
            catalogue,
            list(values[f"{split}_ids"]),
            list(values["catalogue_ids"]),
        )
        for split in ("val", "dev2")
    )


def main(argv):
    del argv
    rows = []
    for model in _MODELS.value:
        values = load_embeddings(model, _BENCH_DIR.value)
        rows.append({"model": model, "variant": "unadapted", **dict(zip(("val MAP@7", "dev2 MAP@7"), score(values))), "seconds": 0.0})  # fmt: skip
        for label, changes, view in variants("ensemble" in model):
            config = dataclasses.replace(_DEFAULT, **changes)
            start = time.perf_counter()
            projection, _ = self_training.self_train(
                values["catalogue"], values[f"pool_{view}"], config
            )
            seconds = time.perf_counter() - start
            val, dev2 = score(values, projection)
            rows.append(
                {
                    "model": model,
                    "variant": label,
                    "val MAP@7": val,
                    "dev2 MAP@7": dev2,
                    "seconds": seconds,
                }
            )
            print(f"{model} | {label} | {val:.3f} | {dev2:.3f} | {seconds:.1f} s", flush=True)  # fmt: skip
    print(metrics.format_table(rows, list(rows[0]), markdown=True))


if __name__ == "__main__":
    app.run(main)
