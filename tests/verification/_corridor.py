"""A one-approach corridor written from scratch, and a plain ``sumo`` run over it.

``in`` (``length_in_m``) -> junction ``J`` -> ``out`` (``length_out_m``), straight, ``lanes``
lanes each way, one speed limit: plain XML nodes and edges through netconvert
(:func:`twin.engine.sumo_tools.run_tool`), then the ``sumo`` binary of the pinned wheel
with the twin's own command line (:meth:`twin.engine.sumo_session.SessionConfig.args`)
and the city's own vehicle types (:data:`city_models.demand.VTYPES_XML`). Nothing here
comes from outside the repository.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from city_models.demand import VTYPES_XML
from twin.engine.sumo_session import SessionConfig
from twin.engine.sumo_tools import run_tool, sumo_binary, tool_env

# The city's passenger car (VTYPES_XML's "car": 4.5 m, accel 2.6, decel 4.5), but a
# driver who never dawdles (sigma 0) and drives exactly at the limit: the theory's vehicle.
IDEAL_ACCEL_MPS2 = 2.6
IDEAL_CAR_XML = (
    '  <vType id="ideal" vClass="passenger" length="4.5" minGap="2.5" '
    f'accel="{IDEAL_ACCEL_MPS2:g}" decel="4.5" sigma="0" speedFactor="1" speedDev="0"/>\n'
)


@dataclass(frozen=True)
class Corridor:
    """The files of one corridor and what they were built with."""

    net: Path
    folder: Path
    length_in_m: float
    length_out_m: float
    lanes: int
    speed_mps: float
    signal: bool


def build_corridor(
    folder: Path,
    *,
    length_in_m: float,
    length_out_m: float = 300.0,
    lanes: int = 1,
    speed_mps: float = 50 / 3.6,
    signal: bool = False,
) -> Corridor:
    """Write nodes and edges, run netconvert; ``J`` is a traffic light when ``signal``."""
    folder.mkdir(parents=True, exist_ok=True)
    junction = "traffic_light" if signal else "priority"
    x_end = length_in_m + length_out_m
    (folder / "c.nod.xml").write_text(
        "<nodes>\n"
        '  <node id="A" x="0" y="0" type="dead_end"/>\n'
        f'  <node id="J" x="{length_in_m:g}" y="0" type="{junction}"/>\n'
        f'  <node id="B" x="{x_end:g}" y="0" type="dead_end"/>\n'
        "</nodes>\n",
        encoding="utf-8",
    )
    (folder / "c.edg.xml").write_text(
        "<edges>\n"
        f'  <edge id="in" from="A" to="J" numLanes="{lanes}" speed="{speed_mps:.4f}"/>\n'
        f'  <edge id="out" from="J" to="B" numLanes="{lanes}" speed="{speed_mps:.4f}"/>\n'
        "</edges>\n",
        encoding="utf-8",
    )
    net = folder / "c.net.xml"
    run_tool(
        "netconvert",
        ["--node-files", folder / "c.nod.xml", "--edge-files", folder / "c.edg.xml",
         "-o", net, "--no-turnarounds", "true", "--no-warnings", "true"],
        what="building the verification corridor",
    )  # fmt: skip
    return Corridor(net, folder, length_in_m, length_out_m, lanes, speed_mps, signal)


def signal_program_xml(phases: Sequence[tuple[float, str]], *, lanes: int) -> str:
    """An additional file with one static program for ``J``: ``(duration_s, state)``
    phases, the state one letter for all of its ``lanes`` links (straight through)."""
    rows = "".join(
        f'    <phase duration="{duration_s:g}" state="{state * lanes}"/>\n'
        for duration_s, state in phases
    )
    return (
        "<additional>\n"
        '  <tlLogic id="J" type="static" programID="verify" offset="0">\n'
        f"{rows}  </tlLogic>\n</additional>\n"
    )


def instant_loops_xml(loops: Sequence[tuple[str, str, float]], *, file: str) -> str:
    """An additional file of instant induction loops ``(id, lane, pos_m)`` (a negative
    position counts back from the lane's end): one row per vehicle passing, its time
    interpolated within the step."""
    rows = "".join(
        f'  <instantInductionLoop id="{loop_id}" lane="{lane}" pos="{pos_m:g}" '
        f'friendlyPos="true" file="{file}"/>\n'
        for loop_id, lane, pos_m in loops
    )
    return f"<additional>\n{rows}</additional>\n"


def loop_entries(path: Path) -> dict[str, list[tuple[float, str, str]]]:
    """Per loop: ``(time_s, vehicle id, vehicle type)`` of every front that entered it,
    in time order."""
    out: dict[str, list[tuple[float, str, str]]] = {}
    for row in read_xml_rows(path, "instantOut"):
        if row["state"] == "enter":
            out.setdefault(row["id"], []).append((float(row["time"]), row["vehID"], row["type"]))
    return {k: sorted(v) for k, v in out.items()}


def run_sumo(
    corridor: Corridor,
    *,
    vehicles_xml: str,
    additional_xml: Sequence[str] = (),
    end_s: float,
    seed: int = 1,
    name: str = "run",
) -> Path:
    """Run plain ``sumo`` over the corridor with the twin's options; the tripinfo file.

    ``vehicles_xml`` are ``<vehicle>`` rows (route ``r``: in -> out); the city's vehicle
    types and the ideal car are defined. ``additional_xml`` are whole additional files.
    """
    folder = corridor.folder
    routes = folder / f"{name}.rou.xml"
    routes.write_text(
        "<routes>\n"
        + VTYPES_XML
        + IDEAL_CAR_XML
        + '  <route id="r" edges="in out"/>\n'
        + vehicles_xml
        + "</routes>\n",
        encoding="utf-8",
    )
    extra = []
    for k, text in enumerate(additional_xml):
        path = folder / f"{name}.add{k}.xml"
        path.write_text(text, encoding="utf-8")
        extra.append(path)
    tripinfo = folder / f"{name}.tripinfo.xml"
    config = SessionConfig(
        net=corridor.net,
        routes=(routes,),
        additional=tuple(extra),
        begin_s=0.0,
        end_s=end_s,
        seed=seed,
        tripinfo=tripinfo,
    )
    subprocess.run(
        [str(sumo_binary("sumo")), *config.args()],
        check=True, env=tool_env(), capture_output=True, timeout=120,
    )  # fmt: skip
    return tripinfo


def read_xml_rows(path: Path, tag: str) -> list[dict[str, str]]:
    """The attributes of every ``tag`` element of an output file."""
    return [dict(el.attrib) for el in ET.parse(path).getroot().iter(tag)]
