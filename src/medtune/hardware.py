"""Facts about the machine that choose fast paths (kept import-light: the guard uses them too)."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def cpu_supports_bf16() -> bool:
    """bf16 on CPU is only faster with native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
