"""The web map in Debian's Chromium (Playwright for Python), against a real ``twin serve``
process with a real interactive session: the district's 49 signals drawn, vehicles that
move when the session advances, a signal's panel on a click, a screenshot, and no
console errors. Skipped only where no Chromium is installed (``apt-get install
chromium``; Playwright cannot download its own browser here)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from city_models.build import City
from tests.twin.api.conftest import link_district

pytestmark = [pytest.mark.slow, pytest.mark.sumo]

CHROMIUM = next(
    (p for p in (os.environ.get("CITYTWIN_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"))
     if p and Path(p).exists()),
    None,
)  # fmt: skip
TWIN = Path(sys.executable).with_name("twin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _twin(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([str(TWIN), *args], env=env, capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    return out.stdout


@pytest.fixture
def server(tmp_path: Path, district_city: City) -> Iterator[tuple[str, str]]:
    """``twin serve`` on a free port over a private data dir; (base URL, operator key)."""
    data = tmp_path / "data"
    link_district(data, district_city)
    env = {**os.environ, "CITYTWIN_DATA": str(data), "CITYTWIN_RUN_WORKERS": "1"}
    env.pop("CITYTWIN_DB", None)
    _twin(env, "admin", "tenant", "create", "lab")
    key = _twin(env, "admin", "key", "create", "--tenant", "lab", "--role", "operator")
    key = key.strip().splitlines()[-1].strip()
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(TWIN), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text())
            time.sleep(0.2)
        yield base, key
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (apt-get install chromium)")
def test_the_map_follows_a_session(server: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, key = server
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=300)
    body = {"scenario": "baseline", "seed": 4, "overrides": {"sim.duration_s": 900}}
    r = api.post("/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    api.post(f"/v1/sessions/{sid}/advance", json={"seconds": 60}).raise_for_status()
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda q: problems.append(f"failed: {q.url}"))
        page.goto(f"{base}/map#key={key}&session={sid}")
        page.wait_for_function("window.citytwinMap && window.citytwinMap.signalStates() === 49",
                               timeout=30_000)  # fmt: skip
        m: Any = page.evaluate(
            "({n: citytwinMap.signalCount(), t: citytwinMap.t(), v: citytwinMap.vehicles(),"
            " shown: citytwinMap.state === undefined})"
        )
        assert m["n"] == 49 and m["t"] == 60.0
        assert key not in page.url  # the key left the address bar
        status = page.locator("#status")
        assert status.get_attribute("data-signals") == "49"
        # the session advances (through the API, as any client would): the map follows
        api.post(f"/v1/sessions/{sid}/advance", json={"seconds": 20}).raise_for_status()
        page.wait_for_function("citytwinMap.t() === 80", timeout=30_000)
        after: Any = page.evaluate("citytwinMap.vehicles()")
        frame = api.get(f"/v1/sessions/{sid}/map/frame").json()
        # click a signal: its panel with plan, current stage, time to change
        tls = sorted(frame["signals"])[0]
        x, y = page.evaluate(f"citytwinMap.signalScreenXY({tls!r})")
        page.mouse.click(x, y)
        panel = page.locator("#panel")
        panel.wait_for(state="visible", timeout=5_000)
        assert panel.get_attribute("data-signal") == tls
        text = panel.inner_text()
        assert f"Signal {tls}" in text and "time to change" in text and "stage" in text
        assert page.locator("#panel [data-field=stage]").inner_text() == str(
            frame["signals"][tls]["stage"]
        )
        shot = tmp_path / "map.png"
        page.screenshot(path=str(shot))
        browser.close()
    assert shot.stat().st_size > 10_000
    assert problems == []
    api.delete(f"/v1/sessions/{sid}")
    assert frame["vehicles_available"]  # the operator gets the vehicles
    before = m["v"]
    assert len(before) > 10 and len(after) > 10  # the AM peak after 60 and 80 s
    moved = [v for v in set(before) & set(after) if before[v] != after[v]]
    assert len(moved) > 5, "vehicles did not move on the map when the session advanced"
