"""Tests for viz.summary.write_summary."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from viz.summary import SummaryFiles, write_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(**overrides: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "id": "run-7f3a9c",
        "status": "done",
        "scenario_name": "am_peak",
        "scenario_kind": "baseline",
        "city_name": "Testville",
        "city_hash": "abcdef0123456789deadbeef",
        "seed": 42,
        "created_at": "2025-01-01T08:00:00",
        "finished_at": "2025-01-01T08:05:00",
        "versions": {"sumo": "1.28.0", "citytwin": "0.1.0"},
        "error": None,
        "metrics": {
            "mean_travel_time_s": 312.4567,
            "throughput_veh": 12345,
            "mean_speed_mps": 8.5,
            "max_queue_by_tls_veh": {f"J{i}": i for i in range(500)},
        },
    }
    run.update(overrides)
    return run


def _series() -> pd.DataFrame:
    t = np.arange(0, 3600, 60, dtype=float)
    return pd.DataFrame(
        {
            "t_s": t,
            "vehicles_running": 100 + 50 * np.sin(t / 600),
            "vehicles_arrived": np.cumsum(np.full(t.size, 20)),
            "mean_speed_mps": 10 - 3 * np.sin(t / 900),
            "vehicles_halting": 20 + 10 * np.cos(t / 700),
        }
    )


def _queues() -> pd.DataFrame:
    rows = [
        {"t_s": float(t), "tls_id": f"J{k}", "queue_veh": (k * 3 + t / 300) % 40}
        for t in range(0, 3600, 300)
        for k in range(25)
    ]
    return pd.DataFrame(rows)


def _assert_valid_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.shape[0] > 400 and img.shape[1] > 600
    assert float(np.std(img)) > 0.01  # not a blank canvas


def test_writes_both_files(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "out"
    files = write_summary(run=_run(), series=_series(), queues=_queues(), out_dir=out)
    assert isinstance(files, SummaryFiles)
    assert files.html == out / "summary.html" and files.html.is_file()
    assert files.png == out / "summary.png" and files.png.is_file()
    _assert_valid_png(files.png)


def test_html_content(tmp_path: Path) -> None:
    files = write_summary(run=_run(), series=_series(), queues=_queues(), out_dir=tmp_path)
    doc = files.html.read_text(encoding="utf-8")
    assert "run-7f3a9c" in doc
    assert "abcdef012345" in doc and "abcdef0123456" not in doc  # hash cut to 12 chars
    assert "312.46" in doc and "312.4567" not in doc
    assert "12,345" in doc
    assert re.search(r"mean_speed_mps</td><td[^>]*>8\.50</td><td>m/s", doc)
    assert re.search(r"mean_travel_time_s</td><td[^>]*>312\.46</td><td>s<", doc)
    assert (
        re.search(r"max_queue_by_tls_veh</td><td[^>]*>500 entries</td><td></td>", doc)
        and "J499" not in doc
    )
    assert "1.28.0" in doc
    assert "<script" not in doc.lower()
    assert "class='error'" not in doc
    match = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", doc)
    assert match is not None
    assert base64.b64decode(match.group(1)) == files.png.read_bytes()


def test_escapes_user_strings(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    run = _run(scenario_name=evil, city_name="A&B <city>", versions={"x": "<b>1</b>"})
    files = write_summary(run=run, series=_series(), queues=_queues(), out_dir=tmp_path)
    doc = files.html.read_text(encoding="utf-8")
    assert evil not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "A&amp;B &lt;city&gt;" in doc
    assert "<b>1</b>" not in doc


def test_failed_run_shows_error(tmp_path: Path) -> None:
    run = _run(status="failed", metrics=None, error="TraCI connection lost <at> step 99")
    files = write_summary(run=run, series=None, queues=None, out_dir=tmp_path)
    doc = files.html.read_text(encoding="utf-8")
    assert "class='error'" in doc
    assert "TraCI connection lost &lt;at&gt; step 99" in doc
    _assert_valid_png(files.png)


@pytest.mark.parametrize(
    ("series", "queues"),
    [
        (None, None),
        (pd.DataFrame(), pd.DataFrame()),
        (pd.DataFrame(columns=["t_s", "mean_speed_mps"]), pd.DataFrame(columns=["t_s"])),
        (pd.DataFrame({"t_s": [0.0, 60.0], "vehicles_running": [1, 2]}), None),
        (None, pd.DataFrame({"t_s": [0.0], "tls_id": ["J1"], "queue_veh": [float("nan")]})),
    ],
)
def test_missing_or_empty_data(
    tmp_path: Path, series: pd.DataFrame | None, queues: pd.DataFrame | None
) -> None:
    run = _run(status="running", finished_at=None, metrics={}, versions=None)
    files = write_summary(run=run, series=series, queues=queues, out_dir=tmp_path)
    assert files.png.read_bytes()[:8] == PNG_MAGIC
    doc = files.html.read_text(encoding="utf-8")
    assert "run-7f3a9c" in doc and "running" in doc
