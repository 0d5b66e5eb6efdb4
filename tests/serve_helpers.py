"""Shared pieces of the API tests (test_serve.py, test_serve_ops.py): an engine whose timing the test controls,
a real uvicorn server in a thread, request helpers. Not a test module."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx

from medtune.assistant import Assistant
from medtune.assistant.engines import Generation, GenParams
from medtune.config import ServeConfig
from medtune.serve.app import create_app
from medtune.serve.auth import Keys

SYSTEM = "You are a careful medical information assistant."
KEY = "k-test-123"
ADMIN = "admin-key-456"
EMERGENCY = "my dad just collapsed, hes not breathing and his lips are blue"
HELLO = [{"role": "user", "content": "What is anemia?"}]


class ScriptedEngine:
    """Yields fixed sentences; `delay` per piece, or waits for `gate`; records calls and cancellations."""

    name = "scripted"
    context_length = 4096

    def __init__(self, pieces: tuple[str, ...] = ("Anemia means few red cells. ", "Iron helps. ", "See a doctor. "),
                 delay: float = 0.0, gate: threading.Event | None = None, repeat: int = 1) -> None:
        self.pieces, self.delay, self.gate, self.repeat = pieces, delay, gate, repeat
        self.calls = 0
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.finished = threading.Event()

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def stream(self, messages, params: GenParams, gen: Generation, cancel: threading.Event):
        self.calls += 1
        self.started.set()
        gen.prompt_tokens = self.count_tokens(messages)
        done = False
        try:
            for piece in list(self.pieces) * self.repeat:
                while self.gate is not None and not self.gate.is_set() and not cancel.is_set():
                    time.sleep(0.01)
                if cancel.is_set():
                    gen.finish_reason = "cancelled"
                    return
                time.sleep(self.delay)
                gen.completion_tokens += len(piece.split())
                yield piece
            gen.finish_reason = "stop"
            done = True
        finally:
            if not done:
                self.cancelled.set()
            self.finished.set()


def settings(tmp_path: Path, **kw) -> ServeConfig:
    return ServeConfig(audit_path=str(tmp_path / "audit.sqlite3"), **kw)


def scripted_app(tmp_path: Path, engine: ScriptedEngine | None = None, keys: Keys | None = None, **kw):
    engine = engine or ScriptedEngine()
    assistant = Assistant(engine, system_prompt=SYSTEM)
    return create_app(assistant, settings(tmp_path, **kw), keys=keys or Keys({KEY: "tester"}, ADMIN)), engine


class Server:
    """A real uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def post(url: str, body, key: str | None = KEY, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, (bytes, str)):
        return httpx.post(url + "/v1/chat/completions", content=body,
                          headers={**headers, "Content-Type": "application/json"}, timeout=60, **kw)
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60, **kw)


def ok_body(**kw) -> dict:
    return {"model": "default", "messages": HELLO, "max_tokens": 16, **kw}


def wait_for(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class AnswerEverything:
    """A guard stub for the subprocess server: loading the real guard's encoder would dominate that test, which
    is about shutdown (the guard itself is exercised by every other test here)."""

    def check_conversation(self, messages):
        from medtune.safety.guard import Verdict

        return Verdict("answer", "benign", 1.0, "stub")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

