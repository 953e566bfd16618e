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


def _short(fingerprint: str) -> str:
    return fingerprint[:12] + "…"


def embed_with_server(
    address: str,
    bundle: index_dir_lib.IndexBundle,
    paths: list[str],
    timeout_seconds: float,
    multiscale: bool = False,
    batch_size: int = 32,
) -> EmbeddedQueries:
    """Embeds through TF Serving's gRPC API, checking every answer's model.

    Each answer names the model version and carries its model fingerprint;
    both must be the index manifest's, so a model re-exported under the same
    name and version is refused too.

    Args:
        address: TF Serving's gRPC endpoint, "host:port".
        bundle: the index the queries will search.
        paths: query image files.
        timeout_seconds: deadline of each request.
        multiscale: embed through `query_multiscale` (see `embed_locally`).
        batch_size: images per request.

    Raises:
        grpc_client.ServingError: the server failed, or serves another model
            than the index was built from, or the index predates model
            fingerprints.
    """
    identity = bundle.manifest["model_identity"]
    name, version = identity["model_name"], int(identity["model_version"])
    expected = identity.get("model_fingerprint")
    if not expected:
        raise grpc_client.ServingError(
            f"index {bundle.directory} was built from an export without a "
            "model fingerprint (an older beau_tf), so it cannot be checked "
            f"that TF Serving at {address} embeds as that model does; "
            "re-export the model (python -m beau_tf.export), serve the new "
            "version and rebuild the index from it (python -m beau_tf.index)."
        )
    client = grpc_client.PredictionClient(
        address,
        model_name=name,
        signature_name=contract.query_signature(multiscale),
        timeout_seconds=timeout_seconds,
        version=version,
    )

    def embed(images) -> embedding_lib.EmbeddedBatch:
        batch = client(images)
        if client.model_version != version:
            raise grpc_client.ServingError(
                f"TF Serving at {address} answered with {name} version "
                f"{client.model_version}, but index {bundle.directory} was "
                f"built from version {version}; serve that version, or "
                "rebuild the index from the served one with python -m "
                "beau_tf.index."
            )
        if batch.model_fingerprint != expected:
            raise grpc_client.ServingError(
                f"TF Serving at {address} serves {name} version {version} "
                f"with model fingerprint {_short(batch.model_fingerprint)}, "
                f"but index {bundle.directory} was built from {name} version "
                f"{version} with model fingerprint {_short(expected)}: the "
                "same name and version, but other weights or settings "
                "(re-exported?). Serve the export the index was built from, "
                "or rebuild the index from the served export with python -m "
                "beau_tf.index."
            )
        return batch

    with client:
        embeddings, kept = embedding_lib.embed_files(
            embed, paths, batch_size=batch_size, description="Queries"
        )
    return EmbeddedQueries(embeddings, [paths[i] for i in kept])


def embed_queries(
    bundle: index_dir_lib.IndexBundle,
    paths: list[str],
    model_dir: str | None = None,
    server: str | None = None,
    timeout_seconds: float = 10.0,
    multiscale: bool = False,
) -> EmbeddedQueries:
    """`embed_locally` with `model_dir`, or `embed_with_server` with
    `server` (exactly one of them)."""
    if bool(model_dir) == bool(server):
        raise ValueError("Pass exactly one of model_dir and server.")
    if server:
        return embed_with_server(
            server, bundle, paths, timeout_seconds, multiscale=multiscale
        )
    return embed_locally(model_dir, bundle, paths, multiscale=multiscale)


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
    id, and with `relevant` a correct result is marked "OK".
    """
    cells, captions = [], []
    for row, (path, row_ids) in enumerate(zip(paths, ids)):
        cells.append(_thumbnail(path, thumbnail))
        captions.append(f"query {_folder_and_name(path)}")
        for rank, item_id in enumerate(row_ids):
            cells.append(_thumbnail(bundle.paths.get(item_id), thumbnail))
            mark = " OK" if relevant and item_id in relevant[row] else ""
            captions.append(f"{scores[row][rank]:.3f} {item_id}{mark}")
    return pictures.image_grid(cells, captions, columns=1 + len(ids[0]))
