"""The search service's work, without HTTP: photo in, catalogue products out.

`Searcher` loads the model and the index (in a background thread, so the
service can say it is alive while it loads), validates and prepares each
upload, embeds it through a `MicroBatcher` shared by concurrent requests,
and searches the index version served at that moment (`IndexVersions`).
Every method a request calls is blocking; the HTTP layer runs them off its
event loop.
"""

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import functools
import io
import threading
import time
import warnings

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf

from beau_tf.data import decode
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.search_service import batching
from beau_tf.search_service import embedders
from beau_tf.search_service import index_versions
from beau_tf.search_service import limits
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import models
from beau_tf.serving import preprocess


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """How the service batches, polls and limits what it accepts.

    Attributes:
      max_batch: most uploads embedded by one model call; 1: no batching.
      batch_timeout_ms: how long a batch waits for more uploads after its
        first.
      index_poll_seconds: how often a base folder of index versions is
        checked for a newer version.
      max_upload_bytes: the largest upload accepted (413 above).
      max_pixels: the most pixels (width x height) an upload may have, read
        from its header before anything is decoded.
      max_k: the most results one search may ask for.
      thumbnail_side: the longest side of a catalogue thumbnail.
      max_decode_bytes: the most memory decoding one upload may take,
        estimated from its header (`decode.DecodeLimits.max_bytes`).
      decode_cpu_seconds: the CPU time decoding one upload may take.
      max_concurrent_decodes: uploads decoded at once; the others wait.
      max_concurrent_uploads: uploads being received or answered at once;
        one more is answered 503 with Retry-After before it is read.
      max_concurrent_searches: searches in progress once their uploads have
        arrived (each held in memory); one more is answered 503 with
        Retry-After.
      header_timeout_seconds: how long a request's headers may take to
        arrive (the connection is closed after).
      body_timeout_seconds: how long a request's body may take to arrive
        (408 after).
      answer_timeout_seconds: how long answering may take once the body has
        arrived, waiting for a decode or a batch included (503 after).
      retry_after_seconds: the Retry-After of a 503 for a busy service.
      max_connections: the most connections open at once.
      allowed_hosts: the Host names answered ("*": any); see
        `limits.allowed_hosts_for`.
    """

    max_batch: int = 16
    batch_timeout_ms: float = 5.0
    index_poll_seconds: float = 10.0
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_k: int = 100
    thumbnail_side: int = 256
    max_decode_bytes: int = 128 * 2**20
    decode_cpu_seconds: float = 3.0
    max_concurrent_decodes: int = 2
    max_concurrent_uploads: int = 64
    max_concurrent_searches: int = 16
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    answer_timeout_seconds: float = 30.0
    retry_after_seconds: int = 2
    max_connections: int = 256
    allowed_hosts: tuple[str, ...] = limits.LOCAL_HOSTS

    def __post_init__(self):
        for name in (
            "max_batch",
            "max_upload_bytes",
            "max_pixels",
            "max_k",
            "thumbnail_side",
            "max_decode_bytes",
            "max_concurrent_decodes",
            "max_concurrent_uploads",
            "max_concurrent_searches",
            "retry_after_seconds",
            "max_connections",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}={value!r} must be an int >= 1.")
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1.")
        if not self.batch_timeout_ms >= 0:
            raise ValueError(
                f"batch_timeout_ms={self.batch_timeout_ms!r} must be >= 0."
            )
        for name in (
            "index_poll_seconds",
            "decode_cpu_seconds",
            "header_timeout_seconds",
            "body_timeout_seconds",
            "answer_timeout_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} must be positive."
                )
        if not self.allowed_hosts or isinstance(self.allowed_hosts, str):
            raise ValueError(
                f"allowed_hosts={self.allowed_hosts!r} must be a tuple of "
                "host names."
            )

    @property
    def decode_limits(self) -> decode.DecodeLimits:
        return decode.DecodeLimits(
            max_bytes=self.max_decode_bytes,
            cpu_seconds=self.decode_cpu_seconds,
        )


class RequestError(ValueError):
    """A request that cannot be answered as sent; the message says why.

    Attributes:
      status_code: the HTTP status that fits (400, 404 or 413).
    """

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


class NotReadyError(RuntimeError):
    """The model or the index is not loaded (yet, or it failed)."""


class BusyError(RuntimeError):
    """The service is too busy to take this request now; the client should
    retry later (503 with Retry-After)."""


@dataclasses.dataclass(frozen=True)
class MaskView:
    """One mask-guided view `query_multiscale` embedded, placed on the upload.

    Attributes:
      pad: the view's padding (a fraction of the product box's side), one of
        the model's `query_mask_views`.
      top, left, bottom, right: the view's square crop as fractions of the
        uploaded image's height and width. Not clipped: a crop reaching past
        the photo took in grey padding there, so values may lie outside
        [0, 1]; clip them only to draw.
    """

    pad: float
    top: float
    left: float
    bottom: float
    right: float


@dataclasses.dataclass(frozen=True)
class SearchAnswer:
    """One upload's results.

    Attributes:
      item_ids: the best catalogue items, best first.
      scores: their inner products with the upload's embedding.
      model: `models.EmbeddingModel.summary()`.
      index: `ServedIndex.summary()` of the version searched.
      timings_ms: milliseconds spent decoding, embedding (the wait for a
        batch included), searching, and predicting the mask when asked.
      mask_png: the predicted product mask over the upload, an 8-bit grey
        PNG as large as the model saw the image; None unless asked.
      views: the mask-guided views the multiscale embedding averaged over,
        one per padding of the model's `query_mask_views`; None unless the
        mask was asked for, the search was multiscale and the model has
        mask views.
    """

    item_ids: list[str]
    scores: list[float]
    model: dict
    index: dict
    timings_ms: dict
    mask_png: bytes | None = None
    views: list[MaskView] | None = None


@dataclasses.dataclass(frozen=True)
class _Loaded:
    """Everything a request needs, assigned at once when loading ends."""

    model: models.EmbeddingModel
    versions: index_versions.IndexVersions
    embed_batchers: dict  # signature name -> MicroBatcher
    mask_batcher: batching.MicroBatcher | None


def describe_bytes(count: int) -> str:
    """`count` bytes in words: "100 bytes", "1.2 KiB", "20 MiB"."""
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}".replace(".0 ", " ")
    return f"{count} bytes"


def check_upload(data: bytes, name: str, config: ServiceConfig) -> None:
    """Refuses an upload too large to decode, before decoding it.

    Raises:
      RequestError: 413 for too many bytes, 400 for too many pixels.
    """
    if len(data) > config.max_upload_bytes:
        raise RequestError(
            f"{name} is {describe_bytes(len(data))}; this service accepts "
            f"images of at most {describe_bytes(config.max_upload_bytes)}.",
            status_code=413,
        )
    limit = f"at most {config.max_pixels / 1e6:g} megapixels accepted"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size  # the header only
    except Image.DecompressionBombError:
        raise RequestError(f"{name} has too many pixels; {limit}.") from None
    except Exception:  # pylint: disable=broad-exception-caught
        return  # unreadable: `decode.encode_for_model` says why
    if width * height > config.max_pixels:
        raise RequestError(
            f"{name} is {width}×{height} pixels "
            f"({width * height / 1e6:.0f} megapixels); {limit}."
        )


def prepare_upload(
    data: bytes,
    name: str,
    config: ServiceConfig,
    decode_slots: threading.Semaphore | None = None,
) -> bytes:
    """The bytes to send the model for an upload, after every check.

    The same image contract as index and search (`decode.encode_for_model`),
    within `config.decode_limits`.

    Args:
      data: the upload.
      name: what to call it in errors.
      config: the limits.
      decode_slots: held while decoding, so that at most its count of
        uploads decode at once; None: no such bound.

    Raises:
      RequestError: the upload is too large or not a usable image.
      BusyError: no decode slot came free within
        `config.answer_timeout_seconds`.
    """
    check_upload(data, name, config)
    if decode_slots is not None and not decode_slots.acquire(
        timeout=config.answer_timeout_seconds
    ):
        raise BusyError(
            f"the service is busy decoding other uploads; retry in "
            f"{config.retry_after_seconds} s."
        )
    try:
        return decode.encode_for_model(data, name, limits=config.decode_limits)
    except decode.ImageDecodeError as error:
        raise RequestError(str(error)) from None
    finally:
        if decode_slots is not None:
            decode_slots.release()


def fitted_placement(
    width: int, height: int, side: int
) -> tuple[int, int, int, int]:
    """Where a width x height image lies in the side x side square it is
    fitted into: `(top, left, fitted_height, fitted_width)` in pixels of the
    square.

    The signatures fit an image into the square by scaling its longer side to
    the square's and centring it (`beau_tf.serving.preprocess.fit_to_square`,
    whose rounding this repeats: Python's and TensorFlow's both round half to
    even).
    """
    scale = side / max(width, height)
    fitted_width = min(side, max(1, round(width * scale)))
    fitted_height = min(side, max(1, round(height * scale)))
    top, left = (side - fitted_height) // 2, (side - fitted_width) // 2
    return top, left, fitted_height, fitted_width


def crop_mask_to_image(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """The part of a (M, M) mask that covers a width x height image: undoes
    the padding of `fitted_placement`."""
    top, left, fitted_height, fitted_width = fitted_placement(
        width, height, mask.shape[0]
    )
    return mask[top : top + fitted_height, left : left + fitted_width]


def square_boxes_to_image(
    boxes: np.ndarray, width: int, height: int, side: int
) -> np.ndarray:
    """Boxes on the square an image was fitted into, as fractions of the
    image instead: the inverse of `fitted_placement`.

    Args:
      boxes: (P, 4) `(y0, x0, y1, x1)` as fractions of the side x side square.
      width: the image's width in pixels.
      height: its height.
      side: the square's side in pixels (the model's image size).

    Returns:
      (P, 4) float64 `(y0, x0, y1, x1)` as fractions of the image's height
      and width, not clipped: a box over the padding, or past the square,
      reaches outside [0, 1].
    """
    top, left, fitted_height, fitted_width = fitted_placement(
        width, height, side
    )
    origin = np.array([top, left, top, left], np.float64)
    size = np.array(
        [fitted_height, fitted_width, fitted_height, fitted_width], np.float64
    )
    return (np.asarray(boxes, np.float64) * side - origin) / size  # (P, 4)


def _image_size(prepared: bytes) -> tuple[int, int]:
    """(width, height) of prepared upload bytes, from the header."""
    with Image.open(io.BytesIO(prepared)) as image:
        return image.size


def mask_as_png(mask: np.ndarray, prepared: bytes) -> bytes:
    """A (M, M) mask in [0, 1], cropped to the image, as an 8-bit grey PNG."""
    cropped = crop_mask_to_image(mask, *_image_size(prepared))
    grey = np.clip(np.rint(cropped * 255.0), 0, 255).astype(np.uint8)
    stream = io.BytesIO()
    Image.fromarray(grey).save(stream, format="PNG")  # (h, w) uint8: "L"
    return stream.getvalue()


def mask_views(
    mask: np.ndarray, pads: Sequence[float], prepared: bytes
) -> list[MaskView]:
    """The mask-guided views `query_multiscale` embeds for an upload.

    The boxes come from `preprocess.mask_boxes`, the rule the signature
    follows, applied to the `serving_default` mask of the whole photo, which
    is the mask the signature uses (the same decoder output on the same
    pixels): they are the crops that were embedded.

    Args:
      mask: (M, M) the upload's predicted mask, covering the square.
      pads: the model's `query_mask_views`.
      prepared: the upload's bytes as sent to the model.

    Returns:
      One view per padding, in the order of `pads`.
    """
    masks = tf.constant(mask[np.newaxis], tf.float32)  # (M, M) -> (1, M, M)
    boxes = preprocess.mask_boxes(masks, tuple(pads)).numpy()[0]  # (P, 4)
    width, height = _image_size(prepared)
    on_image = square_boxes_to_image(boxes, width, height, mask.shape[0])
    return [
        MaskView(float(pad), *(float(value) for value in box))
        for pad, box in zip(pads, on_image)
    ]


def _per_image(embed_fn: embedding_lib.EmbedFn) -> Callable:
    """An `EmbedFn` as a batch function with one (row, status) per image."""

    def embed(images):
        batch = embed_fn(images)
        return list(zip(batch.embeddings, batch.statuses))

    return embed


class Searcher:
    """Answers searches with one model and the served index version.

    Args:
      load_model: builds the model (`embedders.load_local_model`, a
        `connect_to_server`, or a fake in tests); called once by `load`,
        closed by `close`.
      index_path: one index folder or a base folder of numbered versions.
      config: batching, polling and limits.
      load_index: reads an index folder (tests may pass their own).
    """

    def __init__(
        self,
        load_model: Callable[[], models.EmbeddingModel],
        index_path: str,
        config: ServiceConfig = ServiceConfig(),
        load_index: index_versions.LoadFn = index_dir_lib.load_index,
    ):
        self.config = config
        self.index_path = index_path
        self._load_model = load_model
        self._load_index = load_index
        self._loaded: _Loaded | None = None
        self._error: str | None = None
        self._thumbnail = functools.lru_cache(maxsize=1024)(
            self._render_thumbnail
        )
        self._decode_slots = threading.BoundedSemaphore(
            config.max_concurrent_decodes
        )

    @property
    def ready(self) -> bool:
        return self._loaded is not None

    def load(self) -> None:
        """Loads the model and the index, warms the model up and starts
        polling for index versions; the searcher is ready after it.

        Raises:
          Whatever loading raised: OSError or ValueError for a bad model or
          index, `embedders.EmbeddingUnavailableError` for a failed server.
        """
        started = time.perf_counter()
        model = self._load_model()
        embedders.warm_up(model)
        versions = index_versions.IndexVersions(
            self.index_path,
            functools.partial(embedders.check_index, model),
            self._load_index,
        )
        versions.load_initial()
        config = self.config

        def make_batcher(batch_fn, name):
            return batching.MicroBatcher(
                batch_fn, config.max_batch, config.batch_timeout_ms, name
            )

        loaded = _Loaded(
            model=model,
            versions=versions,
            embed_batchers={
                name: make_batcher(_per_image(fn), f"embed-{name}")
                for name, fn in model.embed_fns.items()
            },
            mask_batcher=(
                make_batcher(model.mask_fn, "mask") if model.mask_fn else None
            ),
        )
        versions.start_polling(config.index_poll_seconds)
        self._loaded = loaded
        logging.info(
            "Ready in %.1f s: %s, index %s.",
            time.perf_counter() - started,
            model.source,
            versions.current.bundle.directory,
        )

    def start(
        self, on_failure: Callable[[BaseException], None] | None = None
    ) -> threading.Thread:
        """`load` in a background thread; a failure is logged, reported by
        `status`, and passed to `on_failure` (the server stops on it)."""

        def load_or_report():
            try:
                self.load()
            except Exception as error:  # pylint: disable=broad-exception-caught
                # The details name folders of this machine: logged, while
                # /readyz and requests get the kind of failure only.
                logging.error(
                    "Loading failed: %s: %s", type(error).__name__, error
                )
                self._error = (
                    f"loading the model or the index failed "
                    f"({type(error).__name__}); the service's log says why."
                )
                if on_failure is not None:
                    on_failure(error)

        thread = threading.Thread(target=load_or_report, name="loader")
        thread.daemon = True
        thread.start()
        return thread

    def close(self) -> None:
        """Stops polling and the batchers' threads, and closes the model."""
        loaded = self._loaded
        if loaded is None:
            return
        loaded.versions.stop()
        for batcher in loaded.embed_batchers.values():
            batcher.close()
        if loaded.mask_batcher is not None:
            loaded.mask_batcher.close()
        loaded.model.close()

    def status(self) -> dict:
        """`{"ready", "model", "index", "error"}` for the readiness check."""
        loaded = self._loaded
        if loaded is None:
            return {
                "ready": False,
                "model": None,
                "index": None,
                "error": self._error or "loading the model and the index",
            }
        return {
            "ready": True,
            "model": loaded.model.summary(),
            "index": loaded.versions.current.summary(),
            "error": None,
        }

    def batching_stats(self) -> dict:
        """How the batching went: the settings, and per model function
        (signature, or "mask") its calls and the images they embedded."""
        loaded = self._require_loaded()
        named = dict(loaded.embed_batchers)
        if loaded.mask_batcher is not None:
            named["mask"] = loaded.mask_batcher
        return {
            "max_batch": self.config.max_batch,
            "batch_timeout_ms": self.config.batch_timeout_ms,
            "model_calls": {
                name: {
                    "calls": batcher.num_batches,
                    "images": batcher.num_items,
                }
                for name, batcher in named.items()
            },
        }

    def _require_loaded(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            raise NotReadyError(
                self._error
                or "the service is still loading the model and the index; "
                "retry when /readyz answers 200."
            )
        return loaded

    def search(
        self,
        data: bytes,
        name: str,
        k: int = 5,
        multiscale: bool = True,
        mask: bool = False,
    ) -> SearchAnswer:
        """Finds the catalogue products in one uploaded photo.

        Args:
          data: the uploaded file's bytes.
          name: what to call it in errors ("the uploaded image 'x.jpg'").
          k: results wanted, 1..`config.max_k` (fewer if the catalogue is
            smaller).
          multiscale: embed with `query_multiscale` (else one view).
          mask: also predict the product mask (`serving_default`), and,
            for a multiscale search with a model that has mask views, the
            views it embedded (`mask_views`).

        Raises:
          RequestError: a bad upload or argument (the status code says which).
          NotReadyError: the model or index is not loaded.
          BusyError: too many uploads are waiting to be decoded.
          embedders.EmbeddingUnavailableError: the model could not embed.
        """
        loaded = self._require_loaded()
        if not 1 <= k <= self.config.max_k:
            raise RequestError(
                f"k={k} is out of range; ask for 1 to {self.config.max_k} "
                "results."
            )
        if mask and loaded.mask_batcher is None:
            raise RequestError(
                "mask=true needs the model's masks, which a model served "
                "over gRPC does not give; search without mask, or serve "
                "with --model."
            )
        served = loaded.versions.current  # one version for the whole request
        timings = {}
        started = time.perf_counter()
        prepared = prepare_upload(data, name, self.config, self._decode_slots)
        timings["decode"] = time.perf_counter() - started

        started = time.perf_counter()
        signature = contract.query_signature(multiscale)
        embedding, status = loaded.embed_batchers[signature](prepared)
        if status != contract.STATUS_OK:
            raise RequestError(f"{name} is {status}")
        timings["embed"] = time.perf_counter() - started

        started = time.perf_counter()
        index = served.bundle.index
        ids, scores = index.search(
            embedding[np.newaxis], min(k, index.num_items)
        )  # (D,) -> (1, D)
        timings["search"] = time.perf_counter() - started

        mask_png, views = None, None
        if mask:
            started = time.perf_counter()
            predicted = loaded.mask_batcher(prepared)  # (M, M)
            mask_png = mask_as_png(predicted, prepared)
            # Exports older than mask views lack the key.
            pads = loaded.model.identity.get("query_mask_views") or ()
            if multiscale and pads:
                views = mask_views(predicted, pads, prepared)
            timings["mask"] = time.perf_counter() - started
        return SearchAnswer(
            item_ids=list(ids[0]),
            scores=[float(score) for score in scores[0]],
            model=loaded.model.summary(),
            index=served.summary(),
            timings_ms={
                step: round(seconds * 1000.0, 3)
                for step, seconds in timings.items()
            },
            mask_png=mask_png,
            views=views,
        )

    def thumbnail(self, item_id: str) -> bytes:
        """A JPEG of an indexed item's catalogue image, longest side at most
        `config.thumbnail_side`.

        The id is only looked up in the served index's map, never made into
        a path, so no request reaches another file.

        Raises:
          RequestError: 404 for an id not in the index, or an image that
            cannot be read.
        """
        loaded = self._require_loaded()
        served = loaded.versions.current
        path = loaded.versions.image_path(item_id)
        if path is None:
            version = (
                "" if served.version is None else f" (version {served.version})"
            )
            raise RequestError(
                f"no item {item_id!r} in the index served{version}.",
                status_code=404,
            )
        try:
            return self._thumbnail(path)
        except (OSError, decode.ImageDecodeError) as error:
            # The error names the file: logged, not answered.
            logging.warning("Thumbnail of %r: %s", item_id, error)
            raise RequestError(
                f"the catalogue image of item {item_id!r} cannot be read; "
                "the service's log says why.",
                status_code=404,
            ) from None

    def _render_thumbnail(self, path: str) -> bytes:
        image = decode.load_image(path, max_side=self.config.thumbnail_side)
        rgb = image.rgb
        if image.alpha is not None:  # JPEG has no alpha: composite on white
            opacity = image.alpha[..., np.newaxis] / 255.0
            rgb = np.rint(rgb * opacity + 255.0 * (1.0 - opacity))
        stream = io.BytesIO()
        Image.fromarray(rgb.astype(np.uint8)).save(
            stream, format="JPEG", quality=85
        )
        return stream.getvalue()
