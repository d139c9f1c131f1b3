"""Scenario files that are broken in ways a TOML parser or pydantic would let through,
or answer with a traceback: not UTF-8, nested thousands of levels deep, booleans and
texts taken for numbers, NaN and infinities. Each gets one paragraph naming the file,
the field, the value and what is allowed; a valid file saved with a BOM loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.loader import MAX_DEPTH, load_scenario, parse_scenario
from twin.errors import ScenarioError

HEAD = 'name = "probe"\nkind = "baseline"\n'
ROOT = Path(__file__).resolve().parents[2]


def _error(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "scenario.toml"
    path.write_bytes(data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg  # names the file
    assert "\n" not in msg  # one paragraph
    assert "Traceback" not in msg
    return msg


def test_a_valid_file_saved_with_a_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (HEAD + "seed = 7\n").encode())
    spec = load_scenario(path)
    assert spec.name == "probe" and spec.seed == 7


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    data = HEAD.encode() + 'description = "caf\xe9"\n'.encode("latin-1")
    msg = _error(tmp_path, data)
    assert "not UTF-8" in msg and "0xe9" in msg and "line 3" in msg
    assert "allowed: UTF-8" in msg


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("[" * 5000 + "]" * 5000, "x"),  # arrays in arrays: the parser itself recurses
        ("{a = " * 5000 + "1" + "}" * 5000, "x"),  # inline tables
    ],
    ids=["arrays", "inline-tables"],
)
def test_values_nested_5000_levels_deep(tmp_path: Path, value: str, field: str) -> None:
    msg = _error(tmp_path, (HEAD + f"{field} = {value}\n").encode())
    assert f"field '{field}'" in msg and "line 3" in msg
    assert f"at most {MAX_DEPTH} levels" in msg


def test_tables_nested_5000_levels_deep_by_dotted_keys(tmp_path: Path) -> None:
    msg = _error(tmp_path, (HEAD + "[sim]\n" + ".".join(["a"] * 5000) + " = 1\n").encode())
    assert "field 'sim.a.a" in msg and f"at most {MAX_DEPTH} levels" in msg


@pytest.mark.parametrize(
    ("body", "field", "shown", "allowed"),
    [
        ("seed = true\n", "seed", "true", "a boolean is not a number; allowed: an integer"),
        ("seed = false\n", "seed", "false", "a boolean is not a number; allowed: an integer"),
        ("[city]\nseed = true\n", "city.seed", "true", "allowed: an integer"),
        ("[sim]\nduration_s = true\n", "sim.duration_s", "true", "allowed: a number"),
        ('seed = "3"\n', "seed", "'3'", "a text is not a number"),
        ("seed = 3.0\n", "seed", "3.0", "allowed: an integer"),
    ],
    ids=["seed-true", "seed-false", "city-seed", "float-field", "text", "decimal"],
)
def test_numbers_are_strict(tmp_path: Path, body: str, field: str, shown: str,
                            allowed: str) -> None:  # fmt: skip
    msg = _error(tmp_path, (HEAD + body).encode())
    assert f"field '{field}' = {shown}:" in msg
    assert allowed in msg


@pytest.mark.parametrize(
    ("body", "field", "shown"),
    [
        ("[sim]\nduration_s = nan\n", "sim.duration_s", "nan"),
        ("[demand]\nscale = inf\n", "demand.scale", "inf"),
        ("[sim]\nbegin_s = -inf\n", "sim.begin_s", "-inf"),
    ],
)
def test_nan_and_infinities_name_the_field(
    tmp_path: Path, body: str, field: str, shown: str
) -> None:
    msg = _error(tmp_path, (HEAD + body).encode())
    assert f"field '{field}' = {shown}: a finite number is needed" in msg


def test_the_same_checks_guard_specs_from_the_api() -> None:
    with pytest.raises(ScenarioError, match=r"^api: field 'seed' = true: a boolean"):
        parse_scenario({"name": "x", "kind": "baseline", "seed": True}, source="api")
    with pytest.raises(ScenarioError, match=r"^api: field 'sim.duration_s' = nan"):
        parse_scenario({"name": "x", "kind": "baseline", "sim": {"duration_s": float("nan")}},
                       source="api")  # fmt: skip
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    with pytest.raises(ScenarioError, match="nested more than"):
        parse_scenario({"name": "x", "kind": "baseline", "control": deep}, source="api")


def test_booleans_stay_fine_where_a_boolean_belongs(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(HEAD + "[control]\nguard_fixed = true\n", encoding="utf-8")
    assert load_scenario(path).control.guard_fixed is True


@pytest.mark.parametrize("as_json", [False, True])
def test_the_cli_prints_one_paragraph_and_with_json_a_json_error(
    tmp_path: Path, as_json: bool
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes((HEAD + "seed = true\n").encode())
    data = tmp_path / "data"
    cmd = [sys.executable, "-c", "from twin.app.cli import main; main()", "run", str(path),
           "--data-dir", str(data), *(["--json"] if as_json else [])]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "CITYTWIN_DB": "", "COLUMNS": "200"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
                          check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "field 'seed' = true" in proc.stderr and str(path) in proc.stderr
    if as_json:
        last = json.loads(proc.stdout.strip().splitlines()[-1])
        assert last["status"] == "error" and "field 'seed' = true" in last["error"]
    else:
        assert proc.stdout.strip() == ""
    assert not (data / "runs").exists()  # refused before any run was recorded
