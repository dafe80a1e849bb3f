"""The memory this machine has, and a clear refusal of jobs that would need more (estimated from array shapes).

A job that cannot fit fails at once with what it would need, what the machine has and what to change, instead of
running for minutes and dying of an out-of-memory error. Estimates count the large float32 arrays a job holds at
its peak (each layer states its own in ``estimate_bytes``); they are meant to catch jobs far too large, not to
budget to the last percent. ``LAMINO_MEMORY_GB`` overrides the machine's memory (e.g. to share it with others).
"""

from __future__ import annotations

import os

GIB = 1024 ** 3
FLOAT32 = 4            # bytes per float32 sample


def machine_memory_bytes() -> int:
    """Memory available to this process: ``LAMINO_MEMORY_GB``, else the smaller of the physical memory and a
    cgroup (container) limit."""
    wanted = os.environ.get("LAMINO_MEMORY_GB")
    if wanted:
        try:
            value = float(wanted)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise ValueError(f"LAMINO_MEMORY_GB={wanted!r} is not allowed: give a number of GiB > 0")
        return int(value * GIB)
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def check_memory(need_bytes: float, job: str, advice: str) -> None:
    """Raise a one-line ValueError when ``job`` needs more than this machine's memory; ``advice`` says what to
    change (e.g. "use fewer views or a coarser grid")."""
    have = machine_memory_bytes()
    if need_bytes > have:
        raise ValueError(f"{job} needs about {need_bytes / GIB:.1f} GiB of memory (estimated from its array sizes), "
                         f"more than the {have / GIB:.1f} GiB this machine has: {advice}")
