"""The door of the API, as plain ASGI middleware in front of FastAPI: key check, kill switch, rate limit
and body size for /v1 and /admin, before any body is parsed; and, after the response, one audit row and
the metrics of every chat request, whatever answered it (the gate, a validation error or the endpoint).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medtune.serve.schema import error_response, new_id
from medtune.serve.state import ServerState

log = logging.getLogger("medtune.serve")
CHAT_PATH = "/v1/chat/completions"
DRAIN_LIMIT = 16 * 1024 * 1024  # an oversized body is read (and dropped) up to here, so the client sees the 413


@dataclass
class Exchange:
    """What the audit log and the metrics learn about one chat request while it is answered."""

    request_id: str = field(default_factory=new_id)
    key_id: str | None = None
    model: str | None = None
    status: int | None = None
    action: str | None = None
    category: str | None = None
    score: float | None = None
    finish_reason: str | None = None
    stream: int | None = None
    latency_s: float | None = None
    first_text_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    messages_sha256: str | None = None
    answer_sha256: str | None = None
    error: str | None = None
    messages_raw: str | None = None
    answer_raw: str | None = None
    t0: float = field(default_factory=time.monotonic)

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("t0")
        return row


class Gate:
    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(("/v1/", "/admin/")):
            await self.app(scope, receive, send)
            return
        ex = Exchange()
        scope.setdefault("state", {})["exchange"] = ex
        sent: dict[str, int] = {}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            await send(message)

        try:
            early, receive = await self._check(scope, receive, ex)
            if early is not None:
                await early(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            ex.status = sent.get("status", 500)
            self._account(path, ex)

    async def _check(self, scope: Scope, receive: Receive, ex: Exchange) -> tuple[Any, Receive]:
        """A response that answers the request now, or None and the (replayed) body to pass on."""
        st, headers = self.state, Headers(scope=scope)
        auth = headers.get("authorization")
        if scope["path"].startswith("/admin/"):
            if not st.keys.admin:
                return _refuse(ex, 403, "no admin key is configured (start the server with --admin-key)",
                               "no_admin_key"), receive
            if not st.keys.is_admin(auth):
                return _refuse(ex, 401, "admin calls need the admin key as a bearer token", "invalid_api_key"), receive
            return None, receive
        ex.key_id = st.keys.user_id(auth)
        if ex.key_id is None:
            return _refuse(ex, 401, "missing or invalid API key (send Authorization: Bearer KEY)",
                           "invalid_api_key"), receive
        if st.killed():
            return _refuse(ex, 503, "the assistant is switched off by its operator (kill switch)", "killed"), receive
        wait = st.rate.hit(ex.key_id)
        if wait is not None:
            return _refuse(ex, 429, f"rate limit exceeded ({st.cfg.rate_limit} per key); retry in {wait} s",
                           "rate_limit_exceeded", {"Retry-After": str(wait)}), receive
        if scope["method"] != "POST":
            return None, receive
        return await _read_body(scope, receive, ex, st.max_body)

    def _account(self, path: str, ex: Exchange) -> None:
        m = self.state.metrics
        endpoint = path if path in (CHAT_PATH, "/v1/models") else ("/admin" if path.startswith("/admin/") else "other")
        m.requests.labels(endpoint=endpoint, status=str(ex.status)).inc()
        if path != CHAT_PATH:
            return
        ex.latency_s = round(time.monotonic() - ex.t0, 4)
        if ex.action is not None:
            m.verdicts.labels(action=ex.action, category=ex.category or "").inc()
        if ex.status == 200:
            m.latency.observe(ex.latency_s)
            if ex.first_text_s is not None:
                m.first_text.observe(ex.first_text_s)
        m.prompt_tokens.inc(ex.prompt_tokens or 0)
        m.completion_tokens.inc(ex.completion_tokens or 0)
        try:
            self.state.audit.record(ex.row())
        except Exception:  # the answer is already sent; a broken audit log must not take the API down
            log.exception("audit row lost")


def _refuse(ex: Exchange, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Any:
    ex.error = message
    return error_response(status, message, code=code, headers=headers)


async def _read_body(scope: Scope, receive: Receive, ex: Exchange, limit: int) -> tuple[Any, Receive]:
    """Read the whole body (at most `limit` bytes kept) and hand FastAPI a receive that replays it."""
    declared = Headers(scope=scope).get("content-length")
    too_big = f"request body too large: at most {limit} bytes are read"
    if declared and declared.isdigit() and int(declared) > DRAIN_LIMIT:
        return _refuse(ex, 413, too_big, "request_too_large"), receive
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _refuse(ex, 400, "client disconnected while sending the body", "disconnected"), receive
        body = message.get("body", b"")
        size += len(body)
        if size <= limit:
            chunks.append(body)
        elif size > DRAIN_LIMIT:
            break
        more = message.get("more_body", False)
    if size > limit:
        return _refuse(ex, 413, too_big, "request_too_large"), receive
    data = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await receive()  # later calls see the client's disconnect

    return None, replay
