"""Query photos against a catalogue index: embed, search, draw.

Queries are embedded by the exported model, loaded locally or served by TF
Serving over gRPC; either way the index must come from the same model
version, or search refuses and says which is which.
"""

import dataclasses
import os

import numpy as np

from beau_tf.common import pictures
from beau_tf.data import decode
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import metrics
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import grpc_client


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
        if os.path.isdir(path):
            raise IsADirectoryError(
                f"query image {path} is a folder; pass it as --query_dir."
            )
        if not os.path.isfile(path):
            raise FileNotFoundError(f"query image {path} does not exist.")
    if not paths:
        raise ValueError("No query images: pass --query or --query_dir.")
    return paths


def embed_locally(
    model_dir: str,
    bundle: index_dir_lib.IndexBundle,
    paths: list[str],
    multiscale: bool = False,
) -> EmbeddedQueries:
    """Embeds with the exported SavedModel, after checking the index matches.

    `multiscale` embeds through the `query_multiscale` signature (the mean
    over central crops, see `beau_tf.serving.contract`) instead of one view.
    """
    bundle.index.check_compatible(contract.model_identity(model_dir))
    embed_fn = embedding_lib.load_embed_fn(
        model_dir, contract.query_signature(multiscale)
    )
    embeddings, kept = embedding_lib.embed_files(
        embed_fn, paths, description="Queries"
    )
    return EmbeddedQueries(embeddings, [paths[i] for i in kept])


def embed_with_server(
    address: str,
    bundle: index_dir_lib.IndexBundle,
    paths: list[str],
    timeout_seconds: float,
    multiscale: bool = False,
) -> EmbeddedQueries:
    """Embeds through TF Serving's gRPC API, then checks the served version.

    The server reports the model name and version that answered; both must
    match the index manifest (the signature fingerprint cannot be read over
    gRPC, so a re-exported model under the same version is not caught).

    Raises:
        grpc_client.ServingError: the server failed or serves another
            model version than the index was built from.
    """
    identity = bundle.manifest["model_identity"]
    images = []
    for path in paths:
        with open(path, "rb") as stream:
            images.append(stream.read())
    embeddings, served = grpc_client.embed_with_server(
        address,
        images,
        model_name=identity["model_name"],
        timeout_seconds=timeout_seconds,
        version=int(identity["model_version"]),
        signature_name=contract.query_signature(multiscale),
    )
    if served["model_version"] != int(identity["model_version"]):
        raise grpc_client.ServingError(
            f"TF Serving at {address} answered with {served['model_name']} "
            f"version {served['model_version']}, but index {bundle.directory} "
            f"was built from version {identity['model_version']}; rebuild "
            "the index with python -m beau_tf.index."
        )
    return EmbeddedQueries(embeddings, paths)


def search(
    bundle: index_dir_lib.IndexBundle, queries: np.ndarray, k: int, exact: bool
) -> tuple[list[list[str]], np.ndarray]:
    """Top-k item ids and scores, by ScaNN or by exact inner product.

    k is clipped to the catalogue's size.
    """
    k = min(k, bundle.index.num_items)
    if not exact:
        return bundle.index.search(queries, k)
    indices, scores = metrics.rank_exact(queries, bundle.embeddings, k)
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
    bundle: index_dir_lib.IndexBundle,
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
    return pictures.image_grid(cells, captions, columns=1 + len(ids[0]))
