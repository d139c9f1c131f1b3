"""The project's promises about itself: pins, layout, one place touching SUMO."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
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
SUMO_MODULES = {"twin/engine/sumo_session.py", "twin/engine/sumo_tools.py"}


def test_only_the_engines_sumo_modules_touch_sumo() -> None:
    # belt and braces beside import-linter's "sumo" contract: also a module added later
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in (*CORE, "viz", "experiments")
        for p in (ROOT / pkg).rglob("*.py")
        if SUMO_IMPORT.search(p.read_text(encoding="utf-8"))
        and str(p.relative_to(ROOT)) not in SUMO_MODULES
    ]
    assert offenders == []


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())", "--config", str(root / "pyproject.toml")],
        capture_output=True, text=True, cwd=root, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_import_contracts_kept() -> None:
    """The layers of docs/ARCHITECTURE.md, the SUMO rule and the signal_control leaf
    (import-linter, pyproject's [tool.importlinter]): every import counts, also those
    inside functions."""
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # a cycle engine -> city_models (city_models already imports the engine), hidden
        # inside a function as the old code did
        (
            "twin/engine/store.py",
            "def _hidden() -> None:\n    import city_models.build\n",
            "Layers",
        ),
        ("signal_control/guard.py", "import twin.errors\n", "leaf"),
        ("scenarios/gps.py", "import libsumo\n", "touch SUMO"),
    ],
)
def test_import_contracts_catch_a_violation(tmp_path: Path, module: str, line: str,
                                            contract: str) -> None:  # fmt: skip
    """The same contracts on a copy of the tree with one bad import added: broken."""
    for pkg in ("twin", "scenarios", "signal_control", "city_models", "viz", "experiments"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line, encoding="utf-8")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    broken = [ln for ln in proc.stdout.splitlines() if "BROKEN" in ln]
    assert any(contract in ln for ln in broken), proc.stdout[-3000:]


def test_no_print_in_library_code() -> None:
    pattern = re.compile(r"^\s*print\(", re.MULTILINE)
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in CORE
        for p in (ROOT / pkg).rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
