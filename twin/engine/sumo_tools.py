"""SUMO's files and command-line tools: binaries, netconvert, loading a network, outputs.

With :mod:`twin.engine.sumo_session` this is the only place that touches SUMO (here
through ``sumolib`` and the binaries of the ``eclipse-sumo`` wheel). The map's records
(:class:`city_models.net.NetInfo`) are built from what :func:`load_sumolib_net` returns;
nothing else imports sumolib.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from twin.errors import SumoError

log = logging.getLogger(__name__)

SUMO_VERSION_PIN = "1.28.0"


@cache
def sumo_home() -> Path:
    """The SUMO installation of the ``eclipse-sumo`` wheel (no ``SUMO_HOME`` needed)."""
    import sumo  # the eclipse-sumo wheel

    return Path(sumo.SUMO_HOME)


def sumo_binary(name: str) -> Path:
    """Path of a SUMO executable (``sumo``, ``sumo-gui``, ``netconvert``, ``duarouter``)."""
    path = sumo_home() / "bin" / name
    if not path.exists():
        raise SumoError(
            f"SUMO executable {name!r} is not in {path.parent}; reinstall the pinned "
            f"'eclipse-sumo=={SUMO_VERSION_PIN}' package (pip install -e .)."
        )
    return path


def sumo_tool(relpath: str) -> Path:
    """Path of a script under SUMO's ``tools/`` folder, e.g. ``tls/tlsCycleAdaptation.py``."""
    path = sumo_home() / "tools" / relpath
    if not path.exists():
        raise SumoError(f"SUMO tool {relpath!r} is missing from {path.parent}.")
    return path


def tool_env() -> dict[str, str]:
    """Environment for a SUMO subprocess: ``SUMO_HOME`` set for the child only, and
    ``PROJ_DATA`` pointing at the proj.db the wheel ships for its own PROJ (another
    PROJ's data, e.g. pyproj's, is newer than netconvert's library reads)."""
    env = {**os.environ, "SUMO_HOME": str(sumo_home())}
    # SUMO's tools are not ours: a measured test run's coverage is not started in them
    # (coverage's subprocess support would trace every line of, e.g., routeSampler's LP)
    env.pop("COVERAGE_PROCESS_CONFIG", None)
    env.pop("COVERAGE_PROCESS_START", None)
    proj = sumo_home() / "data" / "proj"
    if (proj / "proj.db").exists():
        env["PROJ_DATA"] = str(proj)
        env.pop("PROJ_LIB", None)
    return env


@cache
def sumo_version() -> str:
    """Version string of the SUMO binaries, e.g. ``'1.28.0'``."""
    out = subprocess.run(
        [str(sumo_binary("sumo")), "--version"], capture_output=True, text=True, check=False
    ).stdout
    first = out.splitlines()[0].strip() if out else ""
    # "Eclipse SUMO sumo 1.28.0" (older releases: "... Version 1.20.0")
    version = first.rsplit(" ", 1)[-1] if first else ""
    return version if version[:1].isdigit() else "unknown"


def run_tool(name: str, args: Sequence[str | Path], *, what: str, cwd: Path | None = None) -> str:
    """Run a SUMO binary; raise :class:`SumoError` with its own message if it fails.

    Parameters
    ----------
    name
        Binary name, e.g. ``"netconvert"``.
    args
        Arguments after the binary.
    what
        What the call is doing, for the error message ("building the network of ...").
    """
    cmd = [str(sumo_binary(name)), *map(str, args)]
    log.debug("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, env=tool_env())
    if proc.returncode != 0:
        errors = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "rror" in ln]
        detail = "\n".join(errors[-8:]) or (proc.stderr or proc.stdout)[-2000:]
        raise SumoError(f"{name} failed while {what} (exit code {proc.returncode}):\n{detail}")
    return proc.stdout + proc.stderr


def run_python_tool(
    relpath: str, args: Sequence[str | Path], *, what: str, cwd: Path | None = None
) -> str:
    """Run a Python script of SUMO's ``tools/`` folder (e.g. ``routeSampler.py``) with this
    interpreter; raise :class:`SumoError` with the script's own message if it fails."""
    cmd = [sys.executable, str(sumo_tool(relpath)), *map(str, args)]
    log.debug("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, env=tool_env())
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise SumoError(
            f"{Path(relpath).name} failed while {what} (exit code {proc.returncode}):\n"
            + "\n".join(tail)
        )
    return proc.stdout + proc.stderr


def diagnose(args: Sequence[str], *, timeout_s: float = 120.0) -> str:
    """SUMO's own complaint about a command line, from a plain ``sumo`` that loads the
    inputs and stops at once (used when libsumo died without saying why)."""
    kept: list[str] = []
    skip = False
    for arg in args:  # drop the run's own window: load the inputs, then stop
        if skip:
            skip = False
        elif arg in ("--begin", "--end", "-b", "-e"):
            skip = True
        else:
            kept.append(arg)
    cmd = [str(sumo_binary("sumo")), *kept, "--begin", "0", "--end", "0"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              timeout=timeout_s, env=tool_env())  # fmt: skip
    except subprocess.TimeoutExpired:
        return "plain sumo did not finish loading the inputs either (timed out)"
    errors = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if "rror" in ln]
    if errors:
        return "\n".join(errors[-6:])
    if proc.returncode != 0:
        broken = [msg for msg in map(xml_problem, _input_files(kept)) if msg]
        if broken:
            return "; ".join(broken)
        return f"plain sumo failed too (exit code {proc.returncode}) while loading the inputs"
    return "plain sumo loads the inputs without error (the crash happened later in the run)"


def _input_files(args: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for flag, value in itertools.pairwise(args):
        if flag in ("--net-file", "--route-files", "--additional-files"):
            files += [Path(v) for v in value.split(",") if v]
    return files


def xml_problem(path: Path) -> str | None:
    """``None`` if ``path`` is well-formed (optionally gzipped) XML, else what is wrong."""
    try:
        with _open_xml(path) as fh:
            for _event, elem in ElementTree.iterparse(fh, events=("end",)):
                elem.clear()
    except FileNotFoundError:
        return f"{path} does not exist"
    except (ElementTree.ParseError, OSError, EOFError) as exc:
        return f"{path} is not well-formed XML ({exc}); rebuild or replace it"
    return None


# --------------------------------------------------------------------------- networks


def load_sumolib_net(path: Path) -> Any:
    """A ``.net.xml[.gz]`` read by sumolib, with its signal programs (the map's records
    are built from it in :mod:`city_models.net`).

    Raises
    ------
    SumoError
        When the file is missing or sumolib cannot parse it.
    """
    import sumolib

    if not path.exists():
        raise SumoError(f"Network file {path} does not exist.")
    try:
        return sumolib.net.readNet(str(path), withPrograms=True, withLatestPrograms=True)
    except Exception as exc:  # sumolib raises plain exceptions from the XML parser
        raise SumoError(f"Network file {path} could not be read: {exc}") from exc


# --------------------------------------------------------------------------- outputs


def _open_xml(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def iter_xml_elements(path: Path, tag: str) -> Iterator[dict[str, str]]:
    """Stream the attributes of every ``<tag>`` element of a SUMO output file."""
    if not path.exists():
        raise SumoError(f"SUMO output {path} was not written (did the simulation start?).")
    with _open_xml(path) as fh:
        try:
            for _event, elem in ElementTree.iterparse(fh, events=("end",)):
                if elem.tag == tag:
                    yield dict(elem.attrib)
                    elem.clear()
        except (ElementTree.ParseError, OSError, EOFError) as exc:  # OSError: bad gzip
            raise SumoError(f"SUMO output {path} is truncated or malformed: {exc}") from exc
