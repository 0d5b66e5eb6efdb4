"""The OpenAI-compatible API over one guarded Assistant (FastAPI). The app holds no guard logic: every
answer, escalation and refusal comes from `Assistant.start()`.

A turn is read in a worker thread (`Pump`) that hands released text to the event loop, so /health and
/metrics answer while the engine works; a client that goes away, the request timeout, or the kill switch
cancel the turn and the engine stops within a token.

Run as: medtune serve --model default [--api-key KEY]
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medtune.assistant import Assistant, InputTooLong, Turn
from medtune.config import ServeConfig
from medtune.errors import MedtuneError
from medtune.safety.policy import ANSWER
from medtune.serve import schema
from medtune.serve.audit import AuditLog, messages_digest, sha256_text
from medtune.serve.auth import Keys
from medtune.serve.gate import Exchange, Gate
from medtune.serve.limits import RequestError, check_request
from medtune.serve.state import ServerState

log = logging.getLogger("medtune.serve")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": schema.error_body(code, text)}}}
    for code, text in [(400, "bad request"), (401, "missing or invalid API key"), (404, "unknown model"),
                       (413, "too large"), (429, "rate limited"), (503, "busy, timed out or switched off")]}


class Pump:
    """Reads a Turn in a worker thread; the event loop awaits its pieces with a deadline."""

    def __init__(self, turn: Turn, on_done: Callable[[], None] | None = None) -> None:
        self.turn = turn
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.done = self.loop.run_in_executor(None, self._run)
        if on_done is not None:
            self.done.add_done_callback(lambda _: on_done())

    def _run(self) -> None:
        try:
            for piece in self.turn:
                self._put(("piece", piece))
            self._put(("end", None))
        except Exception as e:  # handed to the request, which answers it
            self._put(("error", e))

    def _put(self, event: tuple[str, Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is gone (server stopped): nobody is reading
            pass

    async def get(self, deadline: float) -> tuple[str, Any]:
        """The next event; ("timeout", None) when the deadline passes first."""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await self.events.get()
        except TimeoutError:
            return "timeout", None

    async def stop(self) -> None:
        """Cancel the turn and wait for the worker thread to end, even inside a cancelled request."""
        self.turn.cancel()
        with anyio.CancelScope(shield=True):
            await self.done


def create_app(assistant: Assistant, settings: ServeConfig | None = None, *, keys: Keys | None = None,
               audit: AuditLog | None = None) -> FastAPI:
    """The API for one assistant. `keys` default: none (open, loopback only); `audit` default: serve.audit_path."""
    cfg = settings or ServeConfig()
    state = ServerState(assistant, cfg, keys or Keys(),
                        audit or AuditLog(cfg.audit_path, raw=cfg.audit_raw, retention_days=cfg.audit_retention_days))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.audit.close()  # after the last connection closed: every row is queued, write them all

    app = FastAPI(title="medtune", version="1", lifespan=lifespan,
                  description="OpenAI-compatible chat completions over a guarded medical information assistant. "
                              "Education and research only: not a medical device.")
    app.state.medtune = state
    app.add_middleware(Gate, state=state)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        _exchange(request).error = str(exc)
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return schema.error_response(exc.status, str(exc), code=exc.code, param=exc.param, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request", "type": ""}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        kind = first.get("type", "")
        if kind == "json_invalid":
            where, message = "body", "body: not valid JSON"
        elif where == "body" and kind in ("model_attributes_type", "dict_type"):
            message = "body: expected a JSON object (send Content-Type: application/json)"
        else:
            message = f"{where}: {first.get('msg', 'invalid')}"
        _exchange(request).error = message
        return schema.error_response(400, message, code="invalid_json" if kind == "json_invalid" else "invalid_value",
                                     param=None if where == "body" else where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return schema.error_response(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404
                                     else None, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return schema.error_response(500, "internal server error", code="internal_error")

    @app.get("/health")
    async def health() -> JSONResponse:
        killed = state.killed()
        body = {"status": "killed" if killed else "ok", "model": assistant.model_id, "engine": assistant.engine.name,
                "queue_depth": state.queue.depth}
        return JSONResponse(body, status_code=503 if killed else 200)

    @app.get("/metrics")
    async def metrics() -> Response:
        state.metrics.queue_depth.set(state.queue.depth)
        state.killed()
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/v1/models", responses=ERRORS)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(assistant)]}

    @app.get("/v1/models/{model}", responses=ERRORS)
    async def model(model: str) -> dict[str, Any]:
        _check_model(assistant, model)
        return _model_card(assistant)

    @app.post("/admin/kill", responses=ERRORS)
    async def kill() -> dict[str, Any]:
        state.killed_by_admin = True
        state.stop_all()
        log.warning("kill switch ON (admin call): answering 503")
        return {"killed": True}

    @app.post("/admin/resume", responses=ERRORS)
    async def resume() -> dict[str, Any]:
        state.killed_by_admin = False
        still = state.killed()
        log.warning("kill switch OFF (admin call)" + (f"; {state.kill_file} still exists" if still else ""))
        return {"killed": still}

    @app.post("/v1/chat/completions", responses=ERRORS)
    async def chat_completions(body: schema.ChatRequest, request: Request) -> Response:
        return await _chat(state, body, _exchange(request), request)

    return app


def _exchange(request: Request) -> Exchange:
    ex = getattr(request.state, "exchange", None)
    return ex if isinstance(ex, Exchange) else Exchange()


def _model_card(assistant: Assistant) -> dict[str, Any]:
    return {"id": assistant.model_id, "object": "model", "created": 0, "owned_by": "medtune",
            "engine": assistant.engine.name}


def _check_model(assistant: Assistant, name: str) -> None:
    if name != assistant.model_id:
        raise RequestError(404, f"The model '{name}' does not exist; this server serves '{assistant.model_id}'",
                           "model_not_found", "model")


async def _chat(st: ServerState, body: schema.ChatRequest, ex: Exchange, request: Request) -> Response:
    assistant, cfg = st.assistant, st.cfg
    ex.model, ex.stream = body.model, int(body.stream)
    _check_model(assistant, body.model)
    messages, params = check_request(body, cfg, assistant.defaults)
    ex.messages_sha256 = messages_digest(messages)
    ex.messages_raw = json.dumps(messages, ensure_ascii=False)
    deadline = ex.t0 + cfg.request_timeout
    try:
        turn = await anyio.to_thread.run_sync(assistant.start, messages, params, limiter=st.guard_limiter())
    except MedtuneError as e:
        raise RequestError(400, str(e), "invalid_messages", "messages") from None
    v = turn.verdict
    ex.action, ex.category, ex.score = v.action, v.category, round(float(v.score), 4)
    on_done = None
    if v.action == ANSWER:  # only answers need the engine; escalations and refusals never wait for it
        if not st.queue.admit():
            turn.close()
            raise RequestError(503, f"the server is busy ({cfg.queue_size} requests waiting); retry shortly",
                               "queue_full")
        st.metrics.queue_depth.set(st.queue.depth)
        try:
            got = await st.queue.acquire(deadline - time.monotonic())
        except BaseException:
            st.queue.leave()
            turn.close()
            raise
        if not got or st.killed():  # switched off while this request waited: it never starts
            if got:
                st.queue.release_slot()
            st.queue.leave()
            turn.close()
            if got:
                raise RequestError(503, "the assistant was switched off by its operator (kill switch)", "killed")
            ex.finish_reason = "timeout"
            raise RequestError(503, f"timed out after {cfg.request_timeout:g} s waiting for the engine", "timeout")

        def on_done() -> None:
            st.queue.release_slot()
            st.queue.leave()
            st.active.discard(turn)
            st.metrics.queue_depth.set(st.queue.depth)

        st.active.add(turn)
    pump = Pump(turn, on_done)
    ident = ex.request_id
    # a plain answer listens for its client leaving; a streamed one learns it from the failed send
    watcher = None if body.stream else asyncio.create_task(_cancel_on_disconnect(request, turn))
    try:
        first = await pump.get(deadline)
        if first[0] != "piece":
            await pump.stop()
            _raise_for(first, ex, cfg)  # the turn ended before any text: answer with an error (or nothing)
    except BaseException:
        if watcher is not None:
            watcher.cancel()
        await pump.stop()
        _record_reply(ex, turn)
        raise
    if watcher is None:
        return _Stream(_sse(st, pump, first, ident, ex), pump, ex, media_type="text/event-stream",
                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    event = first
    ex.first_text_s = round(time.monotonic() - ex.t0, 4)
    try:
        while event[0] == "piece":  # the text is the turn's reply; the pieces only pace the kill switch and timeout
            if st.killed():
                turn.cancel()
            event = await pump.get(deadline)
    finally:
        watcher.cancel()
    await pump.stop()
    _record_reply(ex, turn)
    if st.killed() and ex.finish_reason == "cancelled":
        raise RequestError(503, "the assistant was switched off by its operator (kill switch)", "killed")
    if event[0] == "timeout":
        ex.finish_reason = "timeout"
        raise RequestError(503, f"timed out after {cfg.request_timeout:g} s generating the answer", "timeout")
    if event[0] == "error":
        _raise_for(event, ex, cfg)
    assert turn.reply is not None
    return JSONResponse(schema.completion(ident, assistant.model_id, turn.reply, v))


async def _cancel_on_disconnect(request: Request, turn: Turn) -> None:
    """A plain (not streamed) answer whose client went away stops generating: uvicorn does not cancel the
    request, it only reports `http.disconnect` to whoever listens (the body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            turn.cancel()
            return


def _raise_for(event: tuple[str, Any], ex: Exchange, cfg: ServeConfig) -> None:
    kind, err = event
    if kind == "timeout":
        ex.finish_reason = "timeout"
        raise RequestError(503, f"timed out after {cfg.request_timeout:g} s before any text", "timeout")
    if kind == "error":
        if isinstance(err, InputTooLong):
            raise RequestError(400, str(err), "context_length_exceeded", "messages")
        ex.error = f"{type(err).__name__}: {err}"
        log.error("generation failed: %s", ex.error)
        raise RequestError(503, "the model failed to answer; retry", "engine_error")


def _record_reply(ex: Exchange, turn: Turn) -> None:
    r = turn.reply
    if r is None:
        return
    ex.finish_reason = ex.finish_reason or r.finish_reason
    ex.prompt_tokens, ex.completion_tokens = r.prompt_tokens, r.completion_tokens
    ex.answer_sha256 = sha256_text(r.text)
    ex.answer_raw = r.text


class _Stream(StreamingResponse):
    """A StreamingResponse that always finishes its turn before the request ends: when the client leaves,
    starlette cancels the sending task and would leave the generator (engine, audit details) to the garbage
    collector, or never start it at all."""

    def __init__(self, content: AsyncIterator[str], pump: Pump, ex: Exchange, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._pump, self._ex = pump, ex

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                await _close_stream(self._pump, self._ex)


def _data(obj: dict[str, Any]) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"


async def _sse(st: ServerState, pump: Pump, first: tuple[str, Any], ident: str, ex: Exchange) -> AsyncIterator[str]:
    """`chat.completion.chunk` events: the verdict with the role, the text pieces, the finish (with `usage`, as
    `stream_options.include_usage` asks, and the verdict again with the output guard's changes); then [DONE]."""
    model, turn = st.assistant.model_id, pump.turn
    deadline = ex.t0 + st.cfg.request_timeout
    try:  # the finally runs when the stream ends early too (client gone); _Stream covers a stream never started
        yield _data(schema.chunk(ident, model, {"role": "assistant", "content": ""},
                                 medtune=schema.verdict_field(turn.verdict)))
        ex.first_text_s = round(time.monotonic() - ex.t0, 4)
        event = first
        while event[0] == "piece":
            yield _data(schema.chunk(ident, model, {"content": event[1]}))
            if st.killed():
                turn.cancel()
            event = await pump.get(deadline)
            if event[0] == "timeout":  # stop the engine, send what it already released, then finish
                ex.finish_reason = "timeout"
                turn.cancel()
                event = await pump.get(time.monotonic() + 30)
        await pump.stop()
        if event[0] == "error":
            ex.error = f"{type(event[1]).__name__}: {event[1]}"
            log.error("generation failed mid-stream: %s", ex.error)
            yield _data(schema.error_body(503, "the model failed to finish the answer", code="engine_error"))
        _record_reply(ex, turn)
        reply = turn.reply
        if reply is not None:
            finish = "length" if ex.finish_reason == "timeout" else schema.finish_reason(reply)
            yield _data(schema.chunk(ident, model, {}, finish=finish, usage=schema.usage(reply),
                                     medtune=schema.verdict_field(turn.verdict, reply)))
        yield "data: [DONE]\n\n"
    finally:
        await _close_stream(pump, ex)


async def _close_stream(pump: Pump, ex: Exchange) -> None:
    """Stop the engine if the stream ended early (client gone) and keep the audit row whole (idempotent)."""
    if not pump.done.done():
        await pump.stop()
    if ex.answer_sha256 is None:
        _record_reply(ex, pump.turn)
