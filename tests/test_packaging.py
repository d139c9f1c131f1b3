"""The project's promises about itself: pins, layout, one place touching SUMO."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*={1,2}\s*([^\s;]+)", req)
    assert m, f"not pinned: {req!r}"
    return m.group(1).lower().replace("_", "-"), m.group(2)


def _pyproject_deps() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    reqs = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["dev"]
    return dict(_name(r) for r in reqs)


def _environment_deps() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            out.update(_name(d) for d in dep["pip"] if not d.startswith("-e"))
        elif not dep.startswith(("python=", "pip")) or dep.startswith("pip="):
            out.update([_name(dep)])
    return out


def test_every_dependency_is_pinned_and_environment_yml_mirrors_pyproject() -> None:
    assert _environment_deps() == _pyproject_deps()


def test_sumo_family_pinned_together() -> None:
    deps = _pyproject_deps()
    versions = {deps[p] for p in ("eclipse-sumo", "libsumo", "traci", "sumolib")}
    assert len(versions) == 1 and versions.pop().startswith("1.28.")


def test_layout_of_the_design_card() -> None:
    for folder in ("twin", "scenarios", "signal_control", "city_models", "viz", "experiments",
                   "tests"):  # fmt: skip
        assert (ROOT / folder).is_dir(), folder
    assert (ROOT / "environment.yml").is_file()
    assert (ROOT / "docs" / "ARCHITECTURE.md").is_file()


SUMO_IMPORT = re.compile(r"^\s*(?:import|from)\s+(traci|libsumo|sumolib|sumo)\b", re.MULTILINE)
CORE = ("twin", "scenarios", "signal_control", "city_models")


def test_only_twin_sumo_modules_touch_sumo() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in (*CORE, "viz", "experiments")
        for p in (ROOT / pkg).rglob("*.py")
        if SUMO_IMPORT.search(p.read_text(encoding="utf-8"))
        and not (p.parent.name == "twin" and p.name.startswith("sumo"))
    ]
    assert offenders == []


ENTRY_POINTS = {"twin/cli.py"}  # entry points may import every package


def test_imports_flow_one_way_core_never_imports_viz_or_experiments() -> None:
    pattern = re.compile(r"^\s*(?:import|from)\s+(viz|experiments)\b", re.MULTILINE)
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in CORE
        for p in (ROOT / pkg).rglob("*.py")
        if str(p.relative_to(ROOT)) not in ENTRY_POINTS and pattern.search(p.read_text("utf-8"))
    ]
    assert offenders == []


def test_no_print_in_library_code() -> None:
    pattern = re.compile(r"^\s*print\(", re.MULTILINE)
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in CORE
        for p in (ROOT / pkg).rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
