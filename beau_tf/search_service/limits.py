"""What keeps the search service up when clients are slow, many or hostile.

Everything a client sends is untrusted; these bound what one connection or
request may hold (memory, a thread, time) and refuse, with a status a client
can act on, what goes over:

  `guarded_protocol`   uvicorn's HTTP/1.1 protocol (h11) with a deadline on
                       each request's headers (a client that sends them a
                       byte at a time, or stops, is disconnected) and a cap
                       on open connections.
  `RequestGuard`       ASGI middleware: the Host and Origin checks (a web
                       page the user opens can neither rebind a name to this
                       service nor post to it from another origin), at most
                       `max_concurrent_uploads` uploads being received or
                       answered (503 with Retry-After beyond, before the
                       body is read), and deadlines on receiving the body
                       (408) and on answering (503 with Retry-After).

The app itself runs at most `max_concurrent_searches` searches once their
uploads have arrived (503 with Retry-After beyond), on threads of their own,
so clients that send their uploads slowly hold a connection, not a search.

Decoding itself is bounded in `beau_tf.data.decode.DecodeLimits` (memory
and CPU per upload) and in `searcher.Searcher` (concurrent decodes).
Refusals that leave a body unread close the connection, so a client cannot
keep it open by sending that body slowly.
"""

import asyncio
from collections.abc import Iterable
import urllib.parse

from absl import logging
import anyio
from starlette import datastructures
from starlette import responses
from uvicorn.protocols.http import h11_impl

# Hosts a service bound to this machine answers to.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Methods a browser may send cross-origin without asking (no preflight) and
# that change nothing here.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HEADER_TIMEOUT_BODY = (
    b'{"error": "the request headers took too long to arrive."}'
)
_HEADER_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_HEADER_TIMEOUT_BODY), _HEADER_TIMEOUT_BODY)
)


def _error(status_code: int, message: str, headers=None) -> responses.Response:
    return responses.JSONResponse(
        {"error": message}, status_code=status_code, headers=headers
    )


def host_name(host_header: str) -> str:
    """The name in a Host header or an origin's netloc, without the port:
    "127.0.0.1:8080" -> "127.0.0.1", "[::1]:80" -> "::1"."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [IPv6]:port
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts_for(listen_host: str, extra: Iterable[str] = ()) -> tuple:
    """The Host names a service listening on `listen_host` answers to.

    Bound to this machine (127.0.0.1, localhost, ::1): those names only, so
    another name that resolves here (DNS rebinding) is refused. Bound to an
    address: that address. Bound to every network (0.0.0.0, ::): any name,
    unless `extra` names them. `extra` names are always added ("*": any).
    """
    hosts = [host_name(name) for name in extra if name.strip()]
    if listen_host in ("0.0.0.0", "::", ""):
        return tuple(hosts) or ("*",)
    name = (
        host_name(listen_host) if listen_host.startswith("[") else listen_host
    )
    if name in LOCAL_HOSTS:
        return tuple(dict.fromkeys([*LOCAL_HOSTS, *hosts]))
    return tuple(dict.fromkeys([name.lower(), *hosts]))


def _is_allowed(host: str, allowed: tuple) -> bool:
    return "*" in allowed or host_name(host) in allowed


class RequestGuard:
    """ASGI middleware: Host and Origin checks, a limit on concurrent
    searches, and deadlines on the body and the answer.

    Args:
      app: the ASGI app behind it.
      allowed_hosts: Host names answered (`allowed_hosts_for`); "*": any.
      limited_paths: the POST paths whose concurrency is limited.
      max_concurrent: the most requests to `limited_paths` in progress
        (receiving their body, or being answered); one more is answered 503
        with Retry-After before its body is read.
      body_timeout_seconds: how long a request body may take to arrive,
        from the end of its headers (408 after, and the connection closes).
      answer_timeout_seconds: how long the answer may take once the body
        has arrived (503 with Retry-After after).
      retry_after_seconds: the Retry-After of a 503.
    """

    def __init__(
        self,
        app,
        *,
        allowed_hosts: tuple,
        limited_paths: tuple = ("/search",),
        max_concurrent: int,
        body_timeout_seconds: float,
        answer_timeout_seconds: float,
        retry_after_seconds: int,
    ):
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.limited_paths = tuple(limited_paths)
        self.max_concurrent = max_concurrent
        self.body_timeout_seconds = body_timeout_seconds
        self.answer_timeout_seconds = answer_timeout_seconds
        self.retry_after = {"Retry-After": str(int(retry_after_seconds))}
        self.in_flight = 0  # requests to `limited_paths` in progress

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limited = (
            scope["method"] == "POST" and scope["path"] in self.limited_paths
        )
        if limited and self.in_flight >= self.max_concurrent:
            await _error(
                503,
                f"the service is busy ({self.max_concurrent} uploads in "
                f"progress); retry in {self.retry_after['Retry-After']} s.",
                {**self.retry_after, "Connection": "close"},
            )(scope, receive, send)
            return
        if limited:
            self.in_flight += 1
        try:
            await self._within_deadlines(scope, receive, send)
        finally:
            if limited:
                self.in_flight -= 1

    def _refusal(self, scope) -> responses.Response | None:
        """The answer to a request from a name or origin not served, or
        None."""
        headers = datastructures.Headers(scope=scope)
        host = headers.get("host", "")
        if not _is_allowed(host, self.allowed_hosts):
            return _error(
                400,
                f"this service does not answer to the host name "
                f"{host_name(host)[:100]!r}; use one of "
                f"{', '.join(self.allowed_hosts)} (python -m beau_tf.serve "
                "--allowed_hosts adds names).",
                {"Connection": "close"},
            )
        origin = headers.get("origin")
        if scope["method"] not in _SAFE_METHODS and origin is not None:
            netloc = urllib.parse.urlsplit(origin).netloc
            if not netloc or netloc.lower() != host.strip().lower():
                return _error(
                    403,
                    f"a page from {origin[:100]!r} may not send requests to "
                    "this service; use its own page.",
                    {"Connection": "close"},
                )
        return None

    async def _within_deadlines(self, scope, receive, send) -> None:
        headers = datastructures.Headers(scope=scope)
        has_body = headers.get("content-length", "0") not in ("", "0") or (
            "transfer-encoding" in headers
        )
        state = {"body_done": not has_body, "started": False}
        with anyio.CancelScope() as deadline:
            deadline.deadline = anyio.current_time() + (
                self.body_timeout_seconds
                if has_body
                else self.answer_timeout_seconds
            )

            async def timed_receive():
                message = await receive()
                if (
                    message["type"] == "http.request"
                    and not message.get("more_body", False)
                    and not state["body_done"]
                ):
                    state["body_done"] = True
                    deadline.deadline = (
                        anyio.current_time() + self.answer_timeout_seconds
                    )
                return message

            async def noting_send(message):
                if message["type"] == "http.response.start":
                    state["started"] = True
                await send(message)

            await self.app(scope, timed_receive, noting_send)
        if not deadline.cancelled_caught or state["started"]:
            return
        if state["body_done"]:
            logging.warning(
                "Answering %s took over %g s; answered 503.",
                scope["path"],
                self.answer_timeout_seconds,
            )
            answer = _error(
                503,
                f"the service could not answer within "
                f"{self.answer_timeout_seconds:g} s; retry in "
                f"{self.retry_after['Retry-After']} s.",
                self.retry_after,
            )
        else:
            answer = _error(
                408,
                f"the request body did not arrive within "
                f"{self.body_timeout_seconds:g} s.",
                {"Connection": "close"},
            )
        await answer(scope, receive, send)


def guarded_protocol(
    header_timeout_seconds: float, max_connections: int
) -> type:
    """uvicorn's h11 protocol class with a header deadline and a connection
    cap, for `uvicorn.Config(http=...)`.

    Args:
      header_timeout_seconds: how long a request's headers may take to
        arrive, from the connection's opening or the previous answer; then
        the connection is answered 408 and closed.
      max_connections: the most connections open at once; one more is
        closed as soon as it opens.
    """

    class GuardedH11Protocol(h11_impl.H11Protocol):
        """H11Protocol with a deadline on each request's headers and a cap
        on open connections."""

        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                logging.warning(
                    "Over %d open connections: closed one from %s.",
                    max_connections,
                    self.client,
                )
                transport.close()
                return
            self._arm_header_timer()

        def connection_lost(self, exc) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers arrived
                self._disarm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self._arm_header_timer()  # for the next request's headers

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(
                header_timeout_seconds, self._headers_timed_out
            )

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.write(_HEADER_TIMEOUT_ANSWER)
                self.transport.close()

    return GuardedH11Protocol
