"""What the sweep tests' workers do: a real run, except for the cells that are meant to
die (SIGKILL, as SUMO taking its process down) or to raise; module-level and light, so
Dask workers and spawned run processes import it quickly."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from twin.engine.executors import Progress, RunOutcome, RunRequest
from twin.errors import ScenarioError

DIES = ("b", 1)
"""(description, seed) of the cell whose process is killed."""
RAISES = ("b", 2)
"""(description, seed) of the cell whose run raises."""
RAISED = "Scenario 'sweep-test': field 'description' = 'b' is refused on seed 2."


def work(request: RunRequest, run_dir: Path, progress: Progress | None) -> RunOutcome:
    """A real run (``execute_request``), or the death or error the cell is meant for."""
    cell = (request.spec.get("description"), request.seed)
    if cell == DIES:
        os.kill(os.getpid(), signal.SIGKILL)
    if cell == RAISES:
        raise ScenarioError(RAISED)
    from twin.app.compose import execute_request  # only the real runs pay for it

    return execute_request(request, run_dir, progress)
