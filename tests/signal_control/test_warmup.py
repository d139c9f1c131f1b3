"""The kernels a real-time loop calls are compiled before it starts
(:mod:`signal_control.warmup`): in a fresh process, after the warm-up, every one of
them has machine code for the types live mode calls it with."""

from __future__ import annotations

import os

import pytest

from tests import spawned


def _compiled_after_warm_up() -> dict[str, int]:
    from signal_control import _preemption_kernels as pk
    from signal_control import _timing_kernels as tk
    from signal_control.warmup import warm_up_kernels

    kernels = {"preemption_plan": pk._preemption_plan,
               "resolve_conflicts": pk._resolve_conflicts,
               # (the wrapper calls the packed kernel, which calls _estimate_timings)
               "estimate_timings_packed": tk._estimate_timings_packed,
               "smooth_timings": tk._smooth_timings}  # fmt: skip
    before = {k: len(f.signatures) for k, f in kernels.items()}
    assert not any(before.values()), before  # a fresh process: nothing compiled yet
    took_s = warm_up_kernels()
    assert took_s >= 0.0
    return {k: len(f.signatures) for k, f in kernels.items()}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="no JIT: nothing to compile")
def test_the_warm_up_compiles_every_kernel_of_ev_priority_and_the_adaptive_estimate() -> None:
    compiled = spawned.in_process(_compiled_after_warm_up)
    assert all(n >= 1 for n in compiled.values()), compiled
