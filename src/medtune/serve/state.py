"""Everything one running API holds: the assistant, its settings, keys, limits, audit log and metrics,
and the kill switch (an admin call, or `serve.kill_file` existing, checked on every request)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from medtune.assistant import Assistant, Turn
from medtune.config import ServeConfig
from medtune.serve.audit import AuditLog
from medtune.serve.auth import Keys
from medtune.serve.limits import EngineQueue, RateLimiter, max_body_bytes
from medtune.serve.metrics import Metrics


@dataclass
class ServerState:
    assistant: Assistant
    cfg: ServeConfig
    keys: Keys
    audit: AuditLog
    metrics: Metrics = field(default_factory=Metrics)
    killed_by_admin: bool = False
    active: set[Turn] = field(default_factory=set)  # turns being generated (stopped by the kill switch)
    _guard_slot: Any = None  # (event loop, anyio.CapacityLimiter(1)), made on first use in a loop

    def __post_init__(self) -> None:
        self.rate = RateLimiter(self.cfg.rate_limit)
        self.queue = EngineQueue(self.cfg.queue_size, int(getattr(self.assistant.engine, "concurrency", 1)))
        self.max_body = max_body_bytes(self.cfg)
        self.kill_file = Path(self.cfg.kill_file).expanduser() if self.cfg.kill_file else None

    def killed(self) -> bool:
        on = self.killed_by_admin or (self.kill_file is not None and os.path.exists(self.kill_file))
        self.metrics.killed.set(int(on))
        return on

    def guard_limiter(self) -> Any:
        """One guard check at a time (short and CPU-bound), in worker threads of the running loop."""
        loop = asyncio.get_running_loop()
        if self._guard_slot is None or self._guard_slot[0] is not loop:
            self._guard_slot = (loop, anyio.CapacityLimiter(1))
        return self._guard_slot[1]

    def stop_all(self) -> None:
        """Cancel every answer in progress (kill switch)."""
        for turn in list(self.active):
            turn.cancel()
