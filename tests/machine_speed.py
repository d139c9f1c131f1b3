"""How fast this machine is right now, in one line for the CI log.

CI's time depends on the machine as much as on the suite: the same suite's 2-worker
pass took 8 min on one machine of this kind and 30 min on another (915 against 3,365
test-seconds, 2026-12-02). ``tests/check.sh`` prints this line first and last, so a slow
CI run says whether the machine was slow. A fixed pure-Python loop's time (0.7-1.4 s on
a machine of this kind on a fast day), the hypervisor's CPU steal since the machine
started and the load average.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

LOOP_N = 20_000_000


def loop_s() -> float:
    """Seconds for a fixed pure-Python loop (one core)."""
    t0 = time.perf_counter()
    acc = 0
    for i in range(LOOP_N):
        acc += i * i
    return time.perf_counter() - t0


def steal_pct() -> float | None:
    """The share of CPU time the hypervisor took since boot (``/proc/stat``), or None."""
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return 100.0 * ticks[7] / max(sum(ticks), 1)


def line() -> str:
    steal = steal_pct()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    steal_txt = "n/a" if steal is None else f"{steal:.1f} %"
    return (
        f"machine: python loop {loop_s():.2f} s (0.7-1.4 s on a fast day here), "
        f"CPU steal since boot {steal_txt}, load {load:.2f}, {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    print(line())  # a script's output, not library code
