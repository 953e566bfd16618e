"""The Milvus index type: the catalogue in a Milvus collection.

`MilvusIndex.build` connects to the Milvus at `MilvusSettings.uri`, creates a
collection of its own (named from the model identity and a random suffix),
inserts each catalogue row as (row number, embedding), builds a vector index
with the inner-product metric and loads the collection; search then runs on
the server. The index folder (`beau_tf.retrieval.index_dir`) keeps the ids,
the embeddings and the manifest as for every type, and `milvus/
connection.json`: the URI, the collection and its index, so the folder
points at a server, which must be trusted as the folder is. No secret is
written: a token (or "user:password") is read from `TOKEN_ENV` when
connecting, and a URI carrying a password is refused.

The vector index is SCANN where the server has it (Milvus 2.3 and later:
ScaNN's method, k-means partitions scored with 4-bit quantised codes, the
best `reorder_k` rescored exactly), else HNSW (milvus-lite), else the
server's AUTOINDEX; `MilvusSettings.index_type` picks another, and the
manifest records which was built. The URI is a server
("http://host:19530", one process or a cluster alike) or a milvus-lite file
("catalogue.db": a local engine in this process, one process at a time).

Loading checks that the collection exists and holds as many rows, of the
same size, as the folder lists, and refuses otherwise; the model identity
and fingerprint checks are `CatalogIndex.check_compatible`'s, as for every
type. `TOKEN_ENV` and `URI_ENV` (the server's address where it moved) are
read when connecting.
"""

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import logging as std_logging
import os
import re
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence

from absl import logging
import numpy as np

from beau_tf.common import progress
from beau_tf.retrieval import indexes

INSTALL_HINT = "pip install 'beau_tf[milvus]'"


class MilvusNotInstalledError(ImportError, ValueError):
    """pymilvus is not installed; the message says how to install it (a
    ValueError too, so a command line prints it as one line)."""


try:
    import pymilvus
except ModuleNotFoundError as error:
    if not (error.name or "").startswith("pymilvus"):
        raise
    raise MilvusNotInstalledError(
        f"The milvus index type needs pymilvus, which is not installed: "
        f"{INSTALL_HINT}"
    ) from None

# Read when connecting, never written: the server's token or "user:password".
TOKEN_ENV = "BEAU_TF_MILVUS_TOKEN"
# Overrides the URI an index folder records, for a server that moved.
URI_ENV = "BEAU_TF_MILVUS_URI"
CONNECTION_FILE = "connection.json"
ROW_FIELD = "row"
VECTOR_FIELD = "embedding"
METRIC = "IP"
# Tried in this order when no index type is asked for.
AUTO_INDEX_TYPES = ("SCANN", "HNSW", "AUTOINDEX")
# Milvus's largest k (quotaAndLimits.limits.topK).
MAX_TOP_K = 16_384
# Candidates SCANN rescores exactly by default: 100 measured recall@10 0.82
# on 30K clustered 64-d rows (nprobe 10% of nlist), 500 measured 0.999.
SCANN_REORDER_K = 500
# Bytes of vectors per insert, well under gRPC's 64 MiB message limit.
_INSERT_BYTES = 16 << 20
# Queries per search request.
_SEARCH_BATCH = 1024
_CONNECT_TIMEOUT_S = 30.0
_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")


@dataclasses.dataclass(frozen=True)
class MilvusSettings:
    """Where and how to build a Milvus index.

    Attributes:
      uri: the server, "http://host:19530" (or https://), or a milvus-lite
        file "path/to/catalogue.db" (recorded absolute).
      index_type: a Milvus index type ("SCANN", "HNSW", "IVF_FLAT",
        "FLAT"...); None tries `AUTO_INDEX_TYPES` in order.
      build_params: the index's build parameters; None chooses them by size
        (`default_params`), for the auto types.
      search_params: the default search parameters (SCANN: nprobe,
        reorder_k; HNSW: ef); None as for build_params.
      collection_prefix: the start of the collection's name.
    """

    uri: str
    index_type: str | None = None
    build_params: Mapping | None = None
    search_params: Mapping | None = None
    collection_prefix: str = "beau_tf"

    def __post_init__(self):
        check_uri(self.uri)
        if not _COLLECTION_NAME.fullmatch(self.collection_prefix):
            raise ValueError(
                f"collection_prefix={self.collection_prefix!r}: Milvus "
                "names hold letters, digits and _, starting with a letter "
                "or _."
            )


def check_uri(uri: str) -> str:
    """`uri`, if it names a server or a milvus-lite file without a password.

    Raises:
      ValueError: another scheme, or a password in the URI.
    """
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme in ("http", "https", "tcp", "unix"):
        if parsed.password is not None:
            raise ValueError(
                f"The Milvus URI for {parsed.hostname} holds a "
                "password, which the index folder would record; pass it in "
                f"{TOKEN_ENV}=user:password instead."
            )
        return uri
    if uri.endswith(".db") and not parsed.scheme:
        return uri
    raise ValueError(
        f"Milvus URI {uri!r} is neither a server (http://host:19530) nor a "
        "milvus-lite file (path ending .db)."
    )


def default_params(index_type: str, num_items: int) -> tuple[dict, dict]:
    """Build and search parameters for an auto index type, by size.

    SCANN follows ScaNN's rule for partitions (about sqrt(N) of them,
    `scann_index.choose_index_params`), searches 10% of them and rescores
    `SCANN_REORDER_K` candidates; on 3K and 30K clustered rows that
    measured recall@10 >= 0.999 against exact search. HNSW takes Milvus's
    usual graph degree and a wide search.

    Returns:
      (build_params, search_params); empty for other types (the server's
      defaults).
    """
    if index_type == "SCANN":
        nlist = int(np.clip(round(np.sqrt(num_items)), 1, 65_536))
        nprobe = max(1, int(round(0.1 * nlist)))
        return {"nlist": nlist}, {
            "nprobe": nprobe,
            "reorder_k": SCANN_REORDER_K,
        }
    if index_type == "HNSW":
        return {"M": 16, "efConstruction": 200}, {"ef": 128}
    return {}, {}


def _pymilvus_version() -> str:
    return importlib.metadata.version("pymilvus")


def _connect(uri: str, purpose: str) -> "pymilvus.MilvusClient":
    """A client of the Milvus at `uri`, authenticated by `TOKEN_ENV`;
    `purpose` ("to build an index") is for the error message.

    Raises:
      ConnectionError: the server cannot be reached.
    """
    try:
        return pymilvus.MilvusClient(
            uri=uri,
            token=os.environ.get(TOKEN_ENV, ""),
            timeout=_CONNECT_TIMEOUT_S,
        )
    except pymilvus.MilvusException as error:
        raise ConnectionError(
            f"Cannot reach Milvus at {uri} {purpose}: {error.message}"
        ) from error


def check_server(uri: str) -> str:
    """The version of the Milvus at `uri`; ConnectionError if unreachable.

    Index building calls it before embedding a single image.
    """
    client = _connect(_absolute(uri), "to build an index")
    try:
        return client.get_server_version()
    finally:
        client.close()


def _absolute(uri: str) -> str:
    """A milvus-lite file's URI made absolute, so the folder works from any
    working directory; a server's URI as it is."""
    if uri.endswith(".db") and "://" not in uri:
        return os.path.abspath(uri)
    return uri


# Log a traceback for each failed call: pymilvus, and milvus-lite's server
# (in this process), which also lacks the AllocTimestamp call pymilvus's
# wait for an index makes (and then polls without).
_RPC_ERROR_LOGGERS = (
    "pymilvus.decorators",
    "milvus_lite.adapter.grpc.servicer",
    "grpc._server",
)


@contextlib.contextmanager
def _quiet_rpc_errors():
    """Hides the logged tracebacks of failures that are expected (an index
    type the server lacks) and handled, or raised with their message."""
    loggers = [std_logging.getLogger(name) for name in _RPC_ERROR_LOGGERS]
    were_disabled = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, was_disabled in zip(loggers, were_disabled):
            logger.disabled = was_disabled


def _collection_name(prefix: str, model_identity: dict) -> str:
    identity = json.dumps(model_identity, sort_keys=True).encode()
    digest = hashlib.sha256(identity).hexdigest()[:12]
    return f"{prefix}_{digest}_{uuid.uuid4().hex[:12]}"


def _drop_quietly(client, collection: str) -> None:
    """Drops a half-built collection, logging (not raising) a failure, so
    the error that stopped the build is the one reported."""
    try:
        client.drop_collection(collection)
    except Exception as error:  # pylint: disable=broad-except
        logging.warning(
            "Could not drop the half-built Milvus collection %s: %s",
            collection,
            error,
        )


def _insert(
    client, collection: str, embeddings: np.ndarray, batch_rows: int
) -> None:
    num_items = len(embeddings)
    with progress.Progress(
        num_items, f"Inserting into {collection}", unit="rows"
    ) as bar:
        for start in range(0, num_items, batch_rows):
            stop = min(start + batch_rows, num_items)
            client.insert(
                collection,
                [
                    {ROW_FIELD: row, VECTOR_FIELD: embeddings[row]}
                    for row in range(start, stop)
                ],
            )
            bar.update(stop - start)


def _create_index(
    client,
    collection: str,
    settings: MilvusSettings,
    num_items: int,
) -> tuple[str, dict, dict]:
    """Builds the vector index: the asked type, or the first auto type the
    server has. Returns (index_type, build_params, search_params)."""
    candidates = (
        (settings.index_type,) if settings.index_type else AUTO_INDEX_TYPES
    )
    refusals = []
    for index_type in candidates:
        build_params, search_params = default_params(index_type, num_items)
        if settings.build_params is not None:
            build_params = dict(settings.build_params)
        if settings.search_params is not None:
            search_params = dict(settings.search_params)
        index_params = client.prepare_index_params()
        index_params.add_index(
            field_name=VECTOR_FIELD,
            index_type=index_type,
            metric_type=METRIC,
            params=build_params,
        )
        falls_back = index_type != candidates[-1]
        try:
            with _quiet_rpc_errors():
                client.create_index(collection, index_params)
        except pymilvus.MilvusException as error:
            # A refusal that names the type is about the type: try the next.
            if not falls_back or index_type not in error.message.upper():
                raise
            refusals.append(f"{index_type}: {error.message}")
            logging.info("Milvus has no %s index: %s", index_type, error)
            # milvus-lite records the index it then fails to build.
            with _quiet_rpc_errors():
                client.release_collection(collection)
                for name in client.list_indexes(collection):
                    client.drop_index(collection, name)
            continue
        if refusals:
            logging.warning(
                "Built a %s index instead (%s).",
                index_type,
                "; ".join(refusals),
            )
        return index_type, build_params, search_params
    raise AssertionError("unreachable: the last candidate raises")


class MilvusIndex(indexes.CatalogIndex):
    """The catalogue in a Milvus collection, searched by the server.

    Attributes:
      manifest: `CatalogIndex`'s entries, "milvus" (the connection: uri,
        collection, index_type, build_params, search_params, and the
        server_version built on) and pymilvus_version.
      connection: what `CONNECTION_FILE` holds (uri, collection,
        index_type, build_params, search_params), with the URI connected to.
    """

    kind = "milvus"

    def __init__(
        self,
        client,
        connection: dict,
        item_ids: list[str],
        manifest: dict,
        directory: str | None = None,
    ):
        super().__init__(item_ids, manifest, directory)
        self._client = client
        self.connection = connection

    @property
    def collection(self) -> str:
        return self.connection["collection"]

    @property
    def index_type(self) -> str:
        return self.connection["index_type"]

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        model_identity: dict,
        settings: MilvusSettings | None = None,
    ) -> "MilvusIndex":
        """Creates, fills, indexes and loads a collection of the catalogue.

        Args:
          embeddings: (N, D) L2-normalised float32, row i for `item_ids[i]`.
          item_ids: N unique string ids.
          model_identity: the model the embeddings came from (see
            `indexes.check_build_inputs`).
          settings: where and how; required (the URI).

        Returns:
          The index, its collection loaded on the server;
          `index_dir.write_index` writes the folder that points at it. A
          build that fails drops its collection.

        Raises:
          ValueError: no settings, or invalid embeddings, ids or identity.
          ConnectionError: the server cannot be reached.
          pymilvus.MilvusException: the server refused a step.
        """
        if not isinstance(settings, MilvusSettings):
            raise ValueError(
                "A milvus index needs MilvusSettings(uri=...) naming the "
                f"server (--milvus_uri); got {settings!r}."
            )
        embeddings, item_ids = indexes.check_build_inputs(
            embeddings, item_ids, model_identity
        )
        num_items, dim = embeddings.shape
        uri = _absolute(settings.uri)
        client = _connect(uri, "to build an index")
        collection = _collection_name(
            settings.collection_prefix, model_identity
        )
        logging.info(
            "Building a Milvus index over %d x %d embeddings: collection %s "
            "at %s",
            num_items,
            dim,
            collection,
            uri,
        )
        schema = client.create_schema(
            auto_id=False,
            enable_dynamic_field=False,
            description=(
                f"beau_tf catalogue of {model_identity['model_name']} "
                f"version {model_identity['model_version']}"
            ),
        )
        schema.add_field(ROW_FIELD, pymilvus.DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, pymilvus.DataType.FLOAT_VECTOR, dim=dim)
        client.create_collection(collection, schema=schema)
        try:
            batch_rows = max(1, _INSERT_BYTES // (4 * dim))
            _insert(client, collection, embeddings, batch_rows)
            client.flush(collection)
            index_type, build_params, search_params = _create_index(
                client, collection, settings, num_items
            )
            client.load_collection(collection)
            connection = {
                "uri": uri,
                "collection": collection,
                "index_type": index_type,
                "build_params": build_params,
                "search_params": search_params,
            }
            _check_collection(
                client, connection, num_items, dim, "(being built)"
            )
            server_version = client.get_server_version()
        except BaseException:
            _drop_quietly(client, collection)
            raise
        manifest = indexes.new_manifest(cls.kind, model_identity, embeddings)
        manifest["milvus"] = dict(connection, server_version=server_version)
        manifest["pymilvus_version"] = _pymilvus_version()
        logging.info(
            "Milvus %s index %s built (server %s)",
            index_type,
            collection,
            server_version,
        )
        return cls(client, connection, item_ids, manifest)

    @classmethod
    def check_manifest(cls, manifest: dict) -> None:
        """Raises unless manifest["milvus"] names a URI and a collection."""
        entry = manifest["milvus"]
        check_uri(entry["uri"])
        if not isinstance(entry["collection"], str):
            raise TypeError("milvus.collection is not a string")

    @property
    def summary(self) -> str:
        return f"{self.kind} {self.index_type} ({self.collection})"

    def save(self, folder: str) -> None:
        """Writes `CONNECTION_FILE`: how to reach the collection (no
        secret)."""
        os.makedirs(folder, exist_ok=True)
        connection = {
            key: self.connection[key]
            for key in (
                "uri",
                "collection",
                "index_type",
                "build_params",
                "search_params",
            )
        }
        with open(os.path.join(folder, CONNECTION_FILE), "w") as stream:
            json.dump(connection, stream, indent=2, sort_keys=True)

    @classmethod
    def load(
        cls,
        folder: str,
        item_ids: list[str],
        embeddings: np.ndarray,
        manifest: dict,
        directory: str,
    ) -> "MilvusIndex":
        """Connects to the collection `save` recorded and loads it.

        The URI is `URI_ENV`'s where set, else the recorded one.

        Raises:
          ConnectionError: the server cannot be reached.
          ValueError: the collection is missing, or holds another number
            of rows, or rows of another size, than the folder lists.
        """
        connection = _read_connection(
            os.path.join(folder, CONNECTION_FILE), directory
        )
        if os.environ.get(URI_ENV):
            connection["uri"] = check_uri(os.environ[URI_ENV])
            logging.info("Milvus at %s (from %s)", connection["uri"], URI_ENV)
        client = _connect(connection["uri"], f"to load index {directory}")
        _check_collection(
            client, connection, len(item_ids), embeddings.shape[1], directory
        )
        client.load_collection(connection["collection"])
        return cls(client, connection, item_ids, manifest, directory)

    def drop(self) -> None:
        """Drops the collection from the server; the index folder then no
        longer loads."""
        self._client.drop_collection(self.collection)
        logging.info("Dropped Milvus collection %s", self.collection)

    def close(self) -> None:
        """Closes the connection; search no longer works."""
        self._client.close()

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        nprobe: int | None = None,
        reorder_k: int | None = None,
        ef: int | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Finds the k catalogue items with the largest inner product.

        Args:
          queries: (Q, D) float32 query embeddings.
          k: results per query, 1 <= k <= min(num_items, `MAX_TOP_K`).
          nprobe: partitions searched (SCANN and IVF types), overriding
            the index's default.
          reorder_k: candidates rescored exactly (SCANN), at least k.
          ef: the HNSW search's breadth, at least k.

        Returns:
          ids: Q lists of k item ids, best first (equal scores to the
            lower row, as brute force orders them).
          scores: (Q, k) float32 inner products, matching `ids`.

        Raises:
          ValueError: when the queries or k do not fit the index, or an
            option does not apply to its index type.
        """
        overrides = {
            name: value
            for name, value in (
                ("nprobe", nprobe),
                ("reorder_k", reorder_k),
                ("ef", ef),
            )
            if value is not None
        }
        unused = sorted(set(overrides) - set(self.connection["search_params"]))
        if unused:
            raise ValueError(
                f"Search options {unused} do not apply to index "
                f"{self._where()}'s {self.index_type} index (it takes "
                f"{sorted(self.connection['search_params']) or 'none'})."
            )
        if k > MAX_TOP_K:
            raise ValueError(f"k={k} exceeds Milvus's largest k, {MAX_TOP_K}.")
        return super().search(queries, k, **overrides)

    def _search_params(self, k: int, overrides: dict) -> dict:
        params = dict(self.connection["search_params"], **overrides)
        # Milvus refuses a reorder_k or ef below k.
        for name in ("reorder_k", "ef"):
            if name in params:
                params[name] = max(int(params[name]), k)
        return params

    def _search_rows(
        self, queries: np.ndarray, k: int, **overrides
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` on checked queries: (Q, k) rows and scores."""
        params = self._search_params(k, overrides)
        rows = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), np.nan, np.float32)
        for start in range(0, len(queries), _SEARCH_BATCH):
            stop = min(start + _SEARCH_BATCH, len(queries))
            self._search_into(
                queries, np.arange(start, stop), k, params, rows, scores
            )
        # Partitions searched may hold fewer than k rows: search them all.
        short = np.flatnonzero((rows < 0).any(axis=1))
        if len(short) and "nprobe" in params:
            wider = dict(
                params,
                nprobe=self.connection["build_params"].get(
                    "nlist", params["nprobe"]
                ),
            )
            self._search_into(queries, short, k, wider, rows, scores)
        short = np.flatnonzero((rows < 0).any(axis=1))
        if len(short):
            raise ValueError(
                f"Milvus collection {self.collection} at "
                f"{self.connection['uri']} answered fewer than k={k} "
                f"results for query {short[0]}; it lost rows index "
                f"{self._where()} lists ({indexes.REBUILD_HINT})."
            )
        # Equal scores to the lower row, as brute force and ScaNN do.
        order = np.lexsort((rows, -scores), axis=1)
        return (
            np.take_along_axis(rows, order, axis=1),
            np.take_along_axis(scores, order, axis=1),
        )

    def _search_into(
        self,
        queries: np.ndarray,
        which: np.ndarray,
        k: int,
        params: dict,
        rows: np.ndarray,
        scores: np.ndarray,
    ) -> None:
        """Searches `queries[which]`, writing rows[which] and scores[which]
        (a query answered short keeps -1 rows after its hits)."""
        answers = self._client.search(
            self.collection,
            data=queries[which].tolist(),
            limit=k,
            anns_field=VECTOR_FIELD,
            search_params={"metric_type": METRIC, "params": params},
            output_fields=[ROW_FIELD],
        )
        num_items = self.num_items
        for query, hits in zip(which, answers):
            found = np.array([hit.id for hit in hits], np.int64)
            if len(found) and not (
                0 <= found.min() and found.max() < num_items
            ):
                raise ValueError(
                    f"Milvus collection {self.collection} answered row "
                    f"{found.max()}, beyond index {self._where()}'s "
                    f"{num_items} items; it is not this index's collection."
                )
            rows[query] = -1
            rows[query, : len(found)] = found
            scores[query, : len(found)] = [hit["distance"] for hit in hits]


def _read_connection(path: str, directory: str) -> dict:
    """`CONNECTION_FILE`'s entries, checked; ValueError if unusable."""
    try:
        with open(path) as stream:
            connection = json.load(stream)
        check_uri(connection["uri"])
        if not isinstance(connection["collection"], str):
            raise TypeError("the collection is not a string")
        if not isinstance(connection["search_params"], dict):
            raise TypeError("search_params is not an object")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Index {directory} has an unusable {path}: {error!r} "
            f"({indexes.REBUILD_HINT})."
        ) from error
    return connection


def _check_collection(
    client, connection: dict, num_items: int, dim: int, where: str
) -> None:
    """Raises ValueError unless the collection exists with `num_items` rows
    of `dim`-d vectors."""
    uri, collection = connection["uri"], connection["collection"]
    if not client.has_collection(collection):
        raise ValueError(
            f"Index {where} points at Milvus collection {collection} at "
            f"{uri}, which does not exist there (dropped, or another "
            f"server); {indexes.REBUILD_HINT}."
        )
    fields = {
        field["name"]: field
        for field in client.describe_collection(collection)["fields"]
    }
    vector = fields.get(VECTOR_FIELD, {}).get("params", {})
    if int(vector.get("dim", -1)) != dim:
        raise ValueError(
            f"Index {where} expects {dim}-d vectors in field {VECTOR_FIELD!r} "
            f"of Milvus collection {collection} at {uri}; it has "
            f"{sorted(fields)} ({VECTOR_FIELD}: {vector or 'missing'})."
        )
    count = int(client.get_collection_stats(collection)["row_count"])
    if count != num_items:
        raise ValueError(
            f"Index {where} lists {num_items} items, but Milvus collection "
            f"{collection} at {uri} holds {count} rows; it was changed "
            f"since the index was built ({indexes.REBUILD_HINT})."
        )
