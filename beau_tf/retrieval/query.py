"""Query photos against a catalogue index: embed, search, draw.

Queries are embedded by the exported model, loaded locally or served by TF
Serving over gRPC; either way the index must come from the same model (name,
version and model fingerprint), or search refuses and says which is which.
A photo that cannot be used is skipped with one warning naming it, the same
way on both paths, and the others are answered.
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
from beau_tf.serving import models
from beau_tf.serving import runtimes


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


def embed_queries(
    bundle: index_dir_lib.IndexBundle,
    paths: list[str],
    model_dir: str | None = None,
    server: str | None = None,
    timeout_seconds: float = 10.0,
    multiscale: bool = False,
    batch_size: int = 32,
    runtime: str = runtimes.TENSORFLOW,
) -> EmbeddedQueries:
    """Embeds query photos with the model the index was built with.

    The model is a local export (`model_dir`) or TF Serving over gRPC
    (`server`), exactly one of them, held to the index's model identity
    (`beau_tf.serving.models.open_model`): another model, or one with the
    same name and version but other weights, is refused.

    Args:
        bundle: the index the queries will search.
        paths: query image files.
        model_dir: an exported version folder.
        server: TF Serving's gRPC endpoint, "host:port".
        timeout_seconds: deadline of each gRPC request.
        multiscale: embed through `query_multiscale` (the mean over central
            crops, see `beau_tf.serving.contract`) instead of one view.
        batch_size: images per model call.
        runtime: what runs a local model (`beau_tf.serving.runtimes`).

    Raises:
        ValueError: not exactly one of `model_dir` and `server`, a
            malformed `server`, or a server with another runtime than
            "tensorflow".
        contract.IncompatibleModelError: the model is not the index's.
        grpc_client.ServingError: the server failed.
    """
    if bool(model_dir) == bool(server):
        raise ValueError("Pass exactly one of model_dir and server.")
    if server:
        grpc_client.check_address(server)
    signature = contract.query_signature(multiscale)
    with models.open_model(
        server or model_dir,
        bundle.manifest["model_identity"],
        index_name=f"index {bundle.directory}",
        signature_names=[signature],
        timeout_seconds=timeout_seconds,
        runtime=runtime,
    ) as model:
        embeddings, kept = embedding_lib.embed_files(
            model.embed_fns[signature],
            paths,
            batch_size=batch_size,
            description="Queries",
        )
    return EmbeddedQueries(embeddings, [paths[i] for i in kept])


def embed_locally(
    model_dir: str,
    bundle: index_dir_lib.IndexBundle,
    paths: list[str],
    multiscale: bool = False,
) -> EmbeddedQueries:
    """`embed_queries` with a local export."""
    return embed_queries(
        bundle, paths, model_dir=model_dir, multiscale=multiscale
    )


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


def _folder_and_name(path: str) -> str:
    """ "shelf/x.jpg" for ".../shelf/x.jpg"; the name alone at the top."""
    folder = os.path.basename(os.path.dirname(path))
    name = os.path.basename(path)
    return f"{folder}/{name}" if folder else name


def contact_sheet(
    bundle: index_dir_lib.IndexBundle,
    paths: list[str],
    ids: list[list[str]],
    scores: np.ndarray,
    relevant: list[set[str]] | None = None,
    thumbnail: int = 128,
):
    """One row per query: the query, then its top-k catalogue images.

    A query's caption names its file with its folder (`query shelf/x.jpg`,
    so two photos named alike differ); results' captions give score and item
    id. With `relevant`, a correct result is marked "OK", and a query none of
    whose results is correct shows, last, the product it should have found
    ("missed <id>"), so the sheet says what went wrong.
    """
    cells, captions = [], []
    for row, (path, row_ids) in enumerate(zip(paths, ids)):
        cells.append(_thumbnail(path, thumbnail))
        captions.append(f"query {_folder_and_name(path)}")
        for rank, item_id in enumerate(row_ids):
            cells.append(_thumbnail(bundle.paths.get(item_id), thumbnail))
            mark = " OK" if relevant and item_id in relevant[row] else ""
            captions.append(f"{scores[row][rank]:.3f} {item_id}{mark}")
        if relevant:
            expected = sorted(relevant[row])
            found = set(row_ids) & relevant[row]
            shown = expected[0] if expected and not found else None
            cells.append(_thumbnail(bundle.paths.get(shown), thumbnail))
            captions.append(f"missed {shown}" if shown else "")
    columns = 1 + len(ids[0]) + (1 if relevant else 0)
    return pictures.image_grid(cells, captions, columns=columns)
