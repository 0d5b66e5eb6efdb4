"""What the API refuses before the engine is touched: too many requests per key (the `limits` library's
moving window), requests that break the size limits, and more waiting requests than the queue holds.

One llama.cpp model serves one request at a time, so the engine sits behind a one-slot semaphore with a
bounded number of waiters: a request that would wait beyond `serve.queue_size` gets 503 at once instead of
piling up until every client times out.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import limits

from medtune.assistant import GenParams
from medtune.config import ServeConfig
from medtune.errors import MedtuneError
from medtune.serve.schema import ChatRequest

ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
BODY_OVERHEAD = 64 * 1024  # bytes of JSON around the messages' characters


class RequestError(Exception):
    """A request the API answers with a 4xx (status, OpenAI error code, offending parameter)."""

    def __init__(self, status: int, message: str, code: str = "invalid_request", param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


class RateLimiter:
    """Requests per key id over a moving window (`serve.rate_limit`, e.g. `60/minute`)."""

    def __init__(self, rate: str) -> None:
        try:
            self.item = limits.parse(rate)
        except ValueError:
            raise MedtuneError(f"serve.rate_limit {rate!r}: expected e.g. 60/minute or 10/second") from None
        self.limiter = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())

    def hit(self, key_id: str) -> int | None:
        """None when the request may pass; otherwise the seconds to wait (for Retry-After)."""
        if self.limiter.hit(self.item, "medtune", key_id):
            return None
        stats = self.limiter.get_window_stats(self.item, "medtune", key_id)
        return max(1, math.ceil(stats.reset_time - time.time()))


def max_body_bytes(cfg: ServeConfig) -> int:
    """Largest request body read: the character limit at 6 bytes a character (JSON \\u escapes) + overhead."""
    return cfg.max_chars * 6 + BODY_OVERHEAD


def check_request(req: ChatRequest, cfg: ServeConfig, defaults: GenParams) -> tuple[list[dict[str, str]], GenParams]:
    """Plain messages and generation settings of a request, or a RequestError naming the field."""
    if len(req.messages) > cfg.max_messages:
        raise RequestError(400, f"messages: {len(req.messages)} messages, at most {cfg.max_messages} are allowed",
                           "too_many_messages", "messages")
    messages: list[dict[str, str]] = []
    for i, m in enumerate(req.messages):
        role = ROLE_ALIASES.get(m.role)
        if role is None:
            raise RequestError(400, f"messages[{i}].role: '{m.role}' is not supported (system, user, assistant)",
                               "invalid_role", f"messages[{i}].role")
        content = m.content
        if isinstance(content, list):
            if any(p.type != "text" or p.text is None for p in content):
                raise RequestError(400, f"messages[{i}].content: only text parts are supported", "invalid_content",
                                   f"messages[{i}].content")
            content = "".join(p.text or "" for p in content)
        if content is None or not content.strip():
            raise RequestError(400, f"messages[{i}].content: empty message", "empty_content",
                               f"messages[{i}].content")
        messages.append({"role": role, "content": content})
    chars = sum(len(m["content"]) for m in messages)
    if chars > cfg.max_chars:
        raise RequestError(413, f"messages: {chars} characters, at most {cfg.max_chars} are allowed",
                           "request_too_large", "messages")
    if messages[-1]["role"] != "user":
        raise RequestError(400, f"messages[{len(messages) - 1}]: the last message must come from the user",
                           "invalid_messages", "messages")
    name = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if max_tokens is not None and not 1 <= max_tokens <= cfg.max_tokens_limit:
        raise RequestError(400, f"{name}: {max_tokens} is out of range (1 to {cfg.max_tokens_limit})",
                           "invalid_max_tokens", name)
    params = GenParams(
        temperature=defaults.temperature if req.temperature is None else req.temperature,
        top_p=defaults.top_p if req.top_p is None else req.top_p,
        repetition_penalty=defaults.repetition_penalty,
        max_tokens=defaults.max_tokens if max_tokens is None else max_tokens,
        seed=req.seed if req.seed is not None else defaults.seed)
    return messages, params


@dataclass
class EngineQueue:
    """`slots` requests on the engine at a time (1 for a local model: a CPU, or one llama.cpp context, serves
    one; more for an upstream server that batches), at most `size` more waiting; the rest are turned away."""

    size: int
    slots: int = 1
    depth: int = 0  # holding or waiting for the engine

    def __post_init__(self) -> None:
        self._slot: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def admit(self) -> bool:
        if self.depth >= self.size + self.slots:
            return False
        self.depth += 1
        return True

    async def acquire(self, timeout: float) -> bool:
        """Wait for the engine (False on timeout). Call only after `admit()`."""
        loop = asyncio.get_running_loop()
        if self._slot is None or self._loop is not loop:  # asyncio primitives belong to one event loop
            self._slot, self._loop = asyncio.Semaphore(self.slots), loop
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await self._slot.acquire()
        except TimeoutError:
            return False
        return True

    def release_slot(self) -> None:
        assert self._slot is not None
        self._slot.release()

    def leave(self) -> None:
        self.depth -= 1
