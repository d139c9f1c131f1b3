"""Bring your own controller: max pressure driven from outside, through the sandbox API.

A researcher's program (this one) opens an interactive session on the district city,
builds the max-pressure policy from the session's layout, and every control interval
advances the twin, reads the queues, and sends its commands; every command passes the
twin's safety guard. The same scenario is also submitted as a batch run with the
twin's own max-pressure controller. Same seed, same policy: the delays agree (the
issue asks for +/- 1 %).

    twin serve --port 8000 &                     # a server, with a key for a lab:
    twin admin tenant create lab
    KEY=$(twin admin key create --tenant lab --role researcher | tail -1)
    python -m experiments.remote_max_pressure --url http://127.0.0.1:8000 --key "$KEY"

Prints (and with ``--json`` writes) ``{"in_process_mean_delay_s", "remote_mean_delay_s",
"delay_diff_pct", "switches", "ticks", "wall_s"}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from experiments._output import emit_json
from twin.client import TwinClient, max_pressure_commands, policy_from_layout


def scenario(seed: int, duration_s: float) -> dict[str, Any]:
    return {
        "name": "remote-max-pressure", "kind": "baseline", "seed": seed,
        "demand": {"scale": 1.2}, "sim": {"duration_s": duration_s},
    }  # fmt: skip


def drive(client: TwinClient, seed: int, duration_s: float) -> dict[str, Any]:
    """The session run: returns its metrics, the switches sent and the ticks."""
    switches = ticks = 0
    with client.open_session(scenario(seed, duration_s), seed=seed) as session:
        policy = policy_from_layout(session.layout)
        step_s = float(session.layout["control_interval_s"])
        obs = session.observe()
        while not obs["done"]:
            obs = session.advance(step_s)
            batch = max_pressure_commands(policy, obs)
            switches += sum(1 for c in batch if c["verb"] == "skip")
            refused = [a for a in session.commands(batch) if not a["accepted"]]
            if refused:
                raise RuntimeError(f"the guard refused: {refused[0]['reason']}")
            ticks += 1
        out = session.close()
    return {"metrics": out["metrics"], "switches": switches, "ticks": ticks}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--duration-s", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    wall0 = time.perf_counter()
    with TwinClient(args.url, key=args.key) as client:
        ref_raw = {**scenario(args.seed, args.duration_s), "control": {"default": "max_pressure"}}
        submitted = client.submit_run(ref_raw, seed=args.seed)
        remote = drive(client, args.seed, args.duration_s)
        reference = client.wait_run(submitted["id"])
    inside = reference["metrics"]["mean_delay_s"]
    outside = remote["metrics"]["mean_delay_s"]
    result = {
        "in_process_mean_delay_s": inside,
        "remote_mean_delay_s": outside,
        "delay_diff_pct": 100.0 * (outside - inside) / inside,
        "in_process_switches": reference["metrics"].get("max_pressure_switches"),
        "switches": remote["switches"],
        "ticks": remote["ticks"],
        "wall_s": time.perf_counter() - wall0,
    }
    emit_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
