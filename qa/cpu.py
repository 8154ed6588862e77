"""What this CPU can do, read once from /proc/cpuinfo: it decides how the int8 models are loaded
(qa/int8.py) and whether training uses bfloat16."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

X86 = ("x86_64", "amd64", "i386", "i686", "x86")


@functools.cache
def flags() -> frozenset[str] | None:
    """The CPU's feature flags (x86 `flags`, ARM `Features`), or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    return frozenset(found)


def is_x86() -> bool:
    return platform.machine().lower() in X86


def sums_int8_exactly() -> bool:
    """Whether ONNX Runtime's u8 x s8 products are exact here: an x86 CPU with VNNI, or another
    architecture (ARM's kernels widen before they add). False when an x86 CPU's flags cannot be
    read."""
    if not is_x86():
        return True
    return bool(flags() and flags() & {"avx512_vnni", "avx_vnni"})


def has_native_bf16() -> bool:
    """Whether bfloat16 arithmetic runs in hardware (AVX512-BF16 or AMX on x86, BF16 on ARM).
    Without it torch emulates bfloat16 autocast, and training ran about 15 times slower than in
    float32 (docs/measurements.md)."""
    return bool(flags() and flags() & {"avx512_bf16", "amx_bf16", "bf16"})
