"""Run the API with uvicorn: build the assistant from the serve config, print one line when ready, and stop
gracefully on SIGTERM/Ctrl-C (uvicorn stops accepting, answers in flight finish, then the audit log is
flushed and closed by the app's shutdown).

Run as: medtune serve --model default [--api-key KEY] [--keys-file FILE] [--admin-key KEY]
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from medtune.assistant import Assistant, GenParams, load_assistant
from medtune.config import ServeConfig
from medtune.errors import MedtuneError
from medtune.safety.policy import Contacts
from medtune.serve.app import create_app
from medtune.serve.audit import AuditLog
from medtune.serve.auth import Keys, check_exposure
from medtune.serve.limits import RateLimiter

log = logging.getLogger("medtune.serve")
DISCLAIMER = ("medtune is for education and research. It is not a medical device: do not use its answers to "
              "diagnose, treat, or choose doses for anyone.")


def build_assistant(spec: str, cfg: ServeConfig, *, upstream: str | None = None,
                    upstream_key: str | None = None) -> Assistant:
    """The guarded assistant the serve config describes (sampling defaults, contact numbers, context).
    Contact numbers left at their defaults stay unset, so Spanish, French and German replies name each
    language's own numbers; numbers set in the config are used in every language."""
    defaults = GenParams(temperature=cfg.temperature, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                         max_tokens=cfg.max_tokens)
    contacts: Contacts | None = Contacts(emergency=cfg.emergency_numbers, crisis=cfg.crisis_line,
                                         poison=cfg.poison_line)
    if contacts == Contacts():
        contacts = None
    return load_assistant(spec, cfg.engine, defaults=defaults, contacts=contacts, n_ctx=cfg.n_ctx,
                          upstream=upstream, upstream_key=upstream_key,
                          upstream_concurrency=cfg.upstream_concurrency, upstream_timeout=cfg.request_timeout)


def check_port(host: str, port: int) -> None:
    """Fail before loading a model when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise MedtuneError(f"--host {host} --port {port}: cannot listen there ({e.strerror}); "
                               "pick another --port") from None


class _Server(uvicorn.Server):
    """uvicorn with a callback once the socket listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            self._on_ready()


def run_app(app: FastAPI, host: str, port: int, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; returns normally after a graceful shutdown."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_keep_alive=5)
    # uvicorn re-raises the signal it caught once it has shut down; with these handlers that ends here, cleanly
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _Server(config, on_ready).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(spec: str, cfg: ServeConfig, keys: Keys, *, echo: Callable[[str], None] = print,
          upstream: str | None = None, upstream_key: str | None = None) -> None:
    """`medtune serve`: load the model (or connect to `upstream`), then answer on cfg.host:cfg.port until
    stopped."""
    check_exposure(cfg.host, keys)
    check_port(cfg.host, cfg.port)
    RateLimiter(cfg.rate_limit)  # a bad serve.rate_limit fails now, not after loading the model
    audit = AuditLog(cfg.audit_path, raw=cfg.audit_raw, retention_days=cfg.audit_retention_days)
    print(f"loading {spec} ...", file=sys.stderr, flush=True)
    try:
        assistant = build_assistant(spec, cfg, upstream=upstream, upstream_key=upstream_key)
    except BaseException:
        audit.close()
        raise
    app = create_app(assistant, cfg, keys=keys, audit=audit)
    if keys.open:
        print("WARNING: no API key configured: the API is OPEN to every local user and process "
              "(loopback only). Pass --api-key KEY or --keys-file FILE.", file=sys.stderr, flush=True)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host

    def ready() -> None:
        echo(f"medtune API ready at http://{host}:{cfg.port}/v1 (model '{assistant.model_id}' on "
             f"{assistant.engine.name}; audit log {audit.path})")
        echo(DISCLAIMER)
        sys.stdout.flush()

    run_app(app, cfg.host, cfg.port, on_ready=ready)
    echo(f"medtune API stopped; {audit.written} audit rows written this run")
