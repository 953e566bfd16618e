"""Query photos against a catalogue index: embed, search, evaluate, draw.

Queries are embedded by the exported model, loaded locally or served by TF
Serving over gRPC; either way the index must come from the same model
version, or search refuses and says which is which.
"""

import csv
import dataclasses
import os

import numpy as np

from beau_tf import embedding as embedding_lib
from beau_tf import evaluation
from beau_tf import exporting
from beau_tf import indexing
from beau_tf import serving_client
from beau_tf import visualize
from beau_tf.data import decode


@dataclasses.dataclass(frozen=True)
class EmbeddedQueries:
    embeddings: np.ndarray  # (Q, D)
    paths: list[str]  # the queries that could be embedded, row-aligned


def list_query_paths(queries: list[str], query_dirs: list[str]) -> list[str]:
    """The query image files named directly or found under folders."""
    paths = list(queries)
    for folder in query_dirs:
        paths.extend(decode.list_image_files(folder))
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"query image {path} does not exist.")
    if not paths:
        raise ValueError("No query images: pass --query or --query_dir.")
    return paths


def query_signature(multiscale: bool) -> str:
    """The exported signature that embeds query photos."""
    if multiscale:
        return exporting.MULTISCALE_SIGNATURE_NAME
    return exporting.SIGNATURE_NAME


def embed_locally(
    model_dir: str,
    bundle: indexing.IndexBundle,
    paths: list[str],
    multiscale: bool = False,
) -> EmbeddedQueries:
    """Embeds with the exported SavedModel, after checking the index matches.

    `multiscale` embeds through the `query_multiscale` signature (the mean
    over central crops, see `beau_tf.exporting`) instead of one view.
    """
    bundle.index.check_compatible(exporting.model_identity(model_dir))
    embed_fn = embedding_lib.load_embed_fn(
        model_dir, query_signature(multiscale)
    )
    embeddings, kept = embedding_lib.embed_files(
        embed_fn, paths, description="Queries"
    )
    return EmbeddedQueries(embeddings, [paths[i] for i in kept])


def embed_with_server(
    address: str,
    bundle: indexing.IndexBundle,
    paths: list[str],
    timeout_seconds: float,
    multiscale: bool = False,
) -> EmbeddedQueries:
    """Embeds through TF Serving's gRPC API, then checks the served version.

    The server reports the model name and version that answered; both must
    match the index manifest (the signature fingerprint cannot be read over
    gRPC, so a re-exported model under the same version is not caught).

    Raises:
        serving_client.ServingError: the server failed or serves another
            model version than the index was built from.
    """
    identity = bundle.manifest["model_identity"]
    images = []
    for path in paths:
        with open(path, "rb") as stream:
            images.append(stream.read())
    embeddings, served = serving_client.embed_with_server(
        address,
        images,
        model_name=identity["model_name"],
        timeout_seconds=timeout_seconds,
        version=int(identity["model_version"]),
        signature_name=query_signature(multiscale),
    )
    if served["model_version"] != int(identity["model_version"]):
        raise serving_client.ServingError(
            f"TF Serving at {address} answered with {served['model_name']} "
            f"version {served['model_version']}, but index {bundle.directory} "
            f"was built from version {identity['model_version']}; rebuild "
            "the index with python -m beau_tf.index."
        )
    return EmbeddedQueries(embeddings, paths)


def search(
    bundle: indexing.IndexBundle, queries: np.ndarray, k: int, exact: bool
) -> tuple[list[list[str]], np.ndarray]:
    """Top-k item ids and scores, by ScaNN or by exact inner product.

    k is clipped to the catalogue's size.
    """
    k = min(k, bundle.index.num_items)
    if not exact:
        return bundle.index.search(queries, k)
    indices, scores = evaluation.rank_exact(queries, bundle.embeddings, k)
    ids = bundle.index.item_ids
    return [[ids[i] for i in row] for row in indices], scores


def results_as_json(
    paths: list[str], ids: list[list[str]], scores: np.ndarray
) -> list[dict]:
    return [
        {
            "query": path,
            "results": [
                {"item_id": item_id, "score": round(float(score), 6)}
                for item_id, score in zip(row_ids, row_scores)
            ],
        }
        for path, row_ids, row_scores in zip(paths, ids, scores)
    ]


def results_as_text(
    paths: list[str], ids: list[list[str]], scores: np.ndarray
) -> str:
    lines = []
    for path, row_ids, row_scores in zip(paths, ids, scores):
        lines.append(path)
        for rank, (item_id, score) in enumerate(zip(row_ids, row_scores), 1):
            lines.append(f"  {rank:2d}. {score:.4f}  {item_id}")
    return "\n".join(lines)


def _thumbnail(path: str | None, size: int) -> np.ndarray:
    """The image letterboxed into a white `(size, size, 3)` square."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    if path is None:
        return canvas
    try:
        rgb = decode.load_image(path, max_side=size).rgb
    except (decode.ImageDecodeError, FileNotFoundError):
        return canvas
    height, width = rgb.shape[:2]
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = rgb
    return canvas


def contact_sheet(
    bundle: indexing.IndexBundle,
    paths: list[str],
    ids: list[list[str]],
    scores: np.ndarray,
    relevant: list[set[str]] | None = None,
    thumbnail: int = 128,
):
    """One row per query: the query, then its top-k catalogue images.

    Captions give rank, score and item id; with `relevant`, a correct result
    is marked "OK".
    """
    cells, captions = [], []
    for row, (path, row_ids) in enumerate(zip(paths, ids)):
        cells.append(_thumbnail(path, thumbnail))
        captions.append(f"query {os.path.basename(path)}")
        for rank, item_id in enumerate(row_ids):
            cells.append(_thumbnail(bundle.paths.get(item_id), thumbnail))
            mark = " OK" if relevant and item_id in relevant[row] else ""
            captions.append(f"{scores[row][rank]:.3f} {item_id}{mark}")
    return visualize.image_grid(cells, captions, columns=1 + len(ids[0]))


def read_groups(path: str) -> dict[str, str]:
    """item_id -> group from a CSV with columns item_id and group."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not {"item_id", "group"} <= set(rows[0]):
        raise ValueError(f"{path}: a CSV with columns item_id,group expected.")
    return {row["item_id"]: row["group"] for row in rows}


def evaluate(
    bundle: indexing.IndexBundle,
    queries: np.ndarray,
    true_ids: list[str],
    groups: list[str] | None,
    qe_k: int = 0,
    qe_alpha: float = 3.0,
    dba_k: int = 0,
    k: int = 7,
) -> list[dict]:
    """Metrics of exact search and ScaNN, with the query-time options asked.

    Returns:
        One dict per method ("exact", "scann", and "+dba", "+qe" variants of
        exact search when asked): the `evaluation.evaluate_rankings` keys,
        plus "scann_recall@k_vs_exact" on the ScaNN row.
    """
    relevant = [{item_id} for item_id in true_ids]
    item_ids = bundle.index.item_ids
    exact_indices, _ = evaluation.rank_exact(queries, bundle.embeddings, k)
    rows = []

    def add(method: str, indices: np.ndarray, **extra):
        ranked = [[item_ids[i] for i in row] for row in indices]
        metrics = evaluation.evaluate_rankings(ranked, relevant, groups, k=k)
        rows.append({"method": method, **metrics, **extra})

    add("exact", exact_indices)
    # Fewer items than k: ScaNN and the recall below use what there is.
    scann_ids, _ = bundle.index.search(queries, min(k, len(item_ids)))
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    scann_indices = np.array([[position[i] for i in row] for row in scann_ids])
    add(
        "scann",
        scann_indices,
        **{
            f"scann_recall@{k}_vs_exact": evaluation.recall_against_exact(
                scann_indices, exact_indices, scann_indices.shape[1]
            )
        },
    )
    database = bundle.embeddings
    if dba_k:
        database = evaluation.database_side_augmentation(database, k=dba_k)
        add("exact+dba", evaluation.rank_exact(queries, database, k)[0])
    if qe_k:
        expanded = evaluation.alpha_query_expansion(
            queries, database, k=qe_k, alpha=qe_alpha
        )
        name = "exact+dba+qe" if dba_k else "exact+qe"
        add(name, evaluation.rank_exact(expanded, database, k)[0])
    return rows
