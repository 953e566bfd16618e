"""The HTTP face of the search service (FastAPI).

`make_app(searcher)` builds the app; `python -m beau_tf.serve` runs it with
uvicorn. FastAPI was chosen because it is well kept and widely used, async
(an upload waiting for its batch holds no thread of the event loop), parses
multipart uploads, validates query parameters, and comes with a TestClient
that drives the whole app in-process, so the tests need no open port.

  POST /search?k=5&multiscale=true&mask=false   multipart field "image"
      -> {"results": [{"item_id", "score"}], "model": {"name", "version",
          "fingerprint"}, "index": {"version", "directory", "items"},
          "timings_ms": {"decode", "embed", "search"[, "mask"]}
          [, "mask_png_base64"][, "views"]}
  GET /healthz                  200 while the process runs
  GET /readyz                   200 once model and index are loaded, else 503
  GET /stats                    batching settings, model calls and images
  GET /items/{item_id}/image    a catalogue thumbnail (JPEG), indexed ids only
  GET /                         the web page

"mask_png_base64" (mask=true) is the predicted product mask over the upload,
an 8-bit grey PNG. "views" (mask=true, multiscale, and a model exported with
mask views) lists the square crops around the product that the multiscale
embedding averaged over, one per padding: `[{"pad", "top", "left",
"bottom", "right"}]`, the sides as fractions of the upload's height and
width, computed from that mask by the export's own rule. They are not
clipped: a crop reaching past the photo took in grey padding there, so a
side may lie outside [0, 1] (clip it to draw, as the page does).

Every error is JSON, `{"error": "..."}`: 400 for a bad request (no image,
bad parameter, not a usable image, a Host name not served), 403 for a
request sent by another site's page, 404 for an unknown item or route, 408
for a body that did not arrive in time, 413 for an upload over the limit,
503 while loading, when the model is unreachable, and, with Retry-After,
when the service is busy. A bad request never gets a 5xx, and never stops
the service. No answer names a file or folder of the machine it runs on.

Every request is untrusted: `limits.RequestGuard` checks its Host and Origin
and bounds concurrent uploads and the time to receive and answer each; at
most `max_concurrent_searches` run once their uploads have arrived;
uploads are decoded within `ServiceConfig`'s memory and CPU limits, a few at
a time. Searches run on threads of their own, so thumbnails and the page
stay quick while searches queue. FastAPI's /docs and /redoc pages are off
(they load scripts from public CDNs); /openapi.json describes the API.
"""

import base64
import functools
import os

from absl import logging
import anyio
import fastapi
from fastapi import exceptions as fastapi_exceptions
from fastapi import responses
from starlette import concurrency
from starlette import exceptions as starlette_exceptions

from beau_tf.search_service import embedders
from beau_tf.search_service import limits
from beau_tf.search_service import searcher as searcher_lib

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
UPLOAD_FIELD = "image"
# Room for the multipart framing around the image in a request body.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _error(status_code: int, message: str) -> responses.JSONResponse:
    return responses.JSONResponse({"error": message}, status_code=status_code)


class _BodyTooLargeError(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before it is
    read further (by its Content-Length, or by counting as it arrives), so a
    huge upload is never spooled to disk."""

    def __init__(self, app, max_bytes: int, message: str):
        self.app = app
        self.max_bytes = max_bytes
        self.message = message

    async def _refuse(self, scope, receive, send) -> None:
        await _error(413, self.message)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        received = 0
        exceeded = False

        async def counting_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLargeError()
            return message

        async def guarded_send(message):
            if not exceeded:  # the app's answer to a cut body is dropped
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLargeError:
            pass
        if exceeded:
            await self._refuse(scope, receive, send)


def _describe_validation(error: fastapi_exceptions.RequestValidationError):
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ())[1:])
        parts.append(f"{where or 'request'}: {problem.get('msg')}")
    return "; ".join(parts) or "invalid request"


def _upload_name(upload: fastapi.UploadFile) -> str:
    if upload.filename:
        return f"the uploaded image {upload.filename[:100]!r}"
    return "the uploaded image"


def _answer_json(answer: searcher_lib.SearchAnswer) -> dict:
    body = {
        "results": [
            {"item_id": item_id, "score": round(score, 6)}
            for item_id, score in zip(answer.item_ids, answer.scores)
        ],
        "model": answer.model,
        "index": answer.index,
        "timings_ms": answer.timings_ms,
    }
    if answer.mask_png is not None:
        body["mask_png_base64"] = base64.b64encode(answer.mask_png).decode()
    if answer.views is not None:
        body["views"] = [
            {
                "pad": view.pad,
                "top": round(view.top, 6),
                "left": round(view.left, 6),
                "bottom": round(view.bottom, 6),
                "right": round(view.right, 6),
            }
            for view in answer.views
        ]
    return body


def make_app(
    searcher: searcher_lib.Searcher, static_dir: str = STATIC_DIR
) -> fastapi.FastAPI:
    """The service's app around a `Searcher` (loaded or loading).

    Args:
      searcher: answers the searches; the app never loads or closes it.
      static_dir: holds index.html, the web page served at /.
    """
    config = searcher.config
    app = fastapi.FastAPI(
        title="beau_tf product search",
        description="Finds the catalogue products shown in a photo.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=searcher.config.max_upload_bytes + _MULTIPART_OVERHEAD_BYTES,
        message=(
            f"the request is too large; this service accepts images of at "
            f"most {searcher_lib.describe_bytes(searcher.config.max_upload_bytes)}."
        ),
    )
    # Added last, so it runs first: refusals come before any body is read.
    app.add_middleware(
        limits.RequestGuard,
        allowed_hosts=config.allowed_hosts,
        max_concurrent=config.max_concurrent_uploads,
        body_timeout_seconds=config.body_timeout_seconds,
        answer_timeout_seconds=config.answer_timeout_seconds,
        retry_after_seconds=config.retry_after_seconds,
    )
    # Created on first use, inside the event loop.
    search_threads = []
    searches = {"in_progress": 0}  # on the event loop only: no lock

    @app.exception_handler(searcher_lib.RequestError)
    async def request_error(_, error: searcher_lib.RequestError):
        return _error(error.status_code, str(error))

    @app.exception_handler(searcher_lib.NotReadyError)
    async def not_ready(_, error):
        return _error(503, str(error))

    @app.exception_handler(searcher_lib.BusyError)
    async def busy(_, error):
        response = _error(503, str(error))
        response.headers["Retry-After"] = str(config.retry_after_seconds)
        return response

    @app.exception_handler(embedders.EmbeddingUnavailableError)
    async def model_unavailable(_, error):
        # The message names the model's folder or server: logged, not sent.
        logging.error("Embedding failed: %s", error)
        return _error(
            503,
            "the model could not embed the image; the service's log says "
            "why.",
        )

    @app.exception_handler(starlette_exceptions.HTTPException)
    async def http_error(_, error: starlette_exceptions.HTTPException):
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(fastapi_exceptions.RequestValidationError)
    async def invalid_request(_, error):
        return _error(400, _describe_validation(error))

    @app.exception_handler(Exception)
    async def bug(_, error):
        # Reached only by a bug; the server logs the traceback.
        return _error(
            500, f"internal error ({type(error).__name__}); see the log"
        )

    @app.post("/search")
    async def search(
        image: fastapi.UploadFile | None = fastapi.File(
            None, description="The photo (JPEG, PNG, BMP, GIF, WebP, TIFF)."
        ),
        k: int = fastapi.Query(
            5, description=f"Results wanted, 1 to {searcher.config.max_k}."
        ),
        multiscale: bool = fastapi.Query(
            True, description="Embed as the mean over central crops."
        ),
        mask: bool = fastapi.Query(
            False,
            description="Also return the predicted product mask (and the "
            "mask-guided views of a multiscale search).",
        ),
    ):
        """Finds the catalogue products in the uploaded photo."""
        if image is None:
            raise searcher_lib.RequestError(
                f"no image uploaded: send the photo as the multipart form "
                f"field {UPLOAD_FIELD!r} (curl -F {UPLOAD_FIELD}=@photo.jpg)."
            )
        data = await image.read()
        if searches["in_progress"] >= config.max_concurrent_searches:
            raise searcher_lib.BusyError(
                f"the service is busy ({config.max_concurrent_searches} "
                f"searches in progress); retry in "
                f"{config.retry_after_seconds} s."
            )
        if not search_threads:
            search_threads.append(
                anyio.CapacityLimiter(config.max_concurrent_searches)
            )
        searches["in_progress"] += 1
        try:
            answer = await anyio.to_thread.run_sync(
                functools.partial(
                    searcher.search,
                    data,
                    _upload_name(image),
                    k,
                    multiscale,
                    mask,
                ),
                limiter=search_threads[0],
                # Past its deadline (limits.RequestGuard) the request is
                # answered; the search's thread finishes alone.
                abandon_on_cancel=True,
            )
        finally:
            searches["in_progress"] -= 1
        return _answer_json(answer)

    @app.get("/healthz")
    async def healthz():
        """200 while the process runs."""
        return {"alive": True}

    @app.get("/readyz")
    async def readyz():
        """200 once the model and the index are loaded, else 503."""
        status = searcher.status()
        return responses.JSONResponse(
            status, status_code=200 if status["ready"] else 503
        )

    @app.get("/stats")
    async def stats():
        """Batching settings and model calls so far (for load tests)."""
        return searcher.batching_stats()

    @app.get("/items/{item_id:path}/image")
    async def item_image(item_id: str):
        """The catalogue thumbnail of an indexed item (JPEG)."""
        jpeg = await concurrency.run_in_threadpool(searcher.thumbnail, item_id)
        return fastapi.Response(
            jpeg,
            media_type="image/jpeg",
            headers={"Cache-Control": "max-age=3600"},
        )

    @app.get("/", include_in_schema=False)
    async def page():
        return responses.FileResponse(os.path.join(static_dir, "index.html"))

    return app
