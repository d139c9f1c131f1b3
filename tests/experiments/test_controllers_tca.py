"""tlsCycleAdaptation on our safety terms (experiments.controllers.guarded_tca), on a
tlsCycleAdaptation-shaped file the test writes from the city's own plans."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from city_models.build import City
from experiments.controllers import guarded_tca
from twin.errors import RunError


def _tca_file(city: City, path: Path, green_s: float, *, drop_phase: bool = False) -> Path:
    lines = ["<additional>"]
    for sig in city.manifest.signals:
        lines.append(f'<tlLogic id="{sig.id}" type="static" programID="tca" offset="0">')
        phases = sig.phases[:-1] if drop_phase else sig.phases
        for p in phases:
            duration = green_s if p.kind == "green" else p.duration_s
            lines.append(f'<phase duration="{duration:g}" state="{p.state}"/>')
        lines.append("</tlLogic>")
    lines.append("</additional>")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_short_greens_are_raised_to_our_minimums(tmp_path: Path, district_city: City) -> None:
    out = guarded_tca(_tca_file(district_city, tmp_path / "tca.xml", 2.0), district_city,
                      tmp_path / "guarded.xml")  # fmt: skip
    ours = {s.id: s for s in district_city.manifest.signals}
    logics = list(ElementTree.parse(out).getroot().iter("tlLogic"))
    assert len(logics) == len(ours)
    for logic in logics:
        sig = ours[str(logic.get("id"))]
        assert logic.get("programID") == "tca_guarded"
        for p, q in zip(sig.phases, logic.iter("phase"), strict=True):
            duration = float(str(q.get("duration")))
            if p.kind == "green":  # 2 s asked; the phase's own minimum given
                assert duration == pytest.approx(p.min_green_s) and duration > 2.0
            else:
                assert duration == pytest.approx(p.duration_s)


def test_long_greens_are_kept(tmp_path: Path, district_city: City) -> None:
    out = guarded_tca(_tca_file(district_city, tmp_path / "tca.xml", 61.0), district_city,
                      tmp_path / "guarded.xml")  # fmt: skip
    greens = {
        float(str(q.get("duration")))
        for logic in ElementTree.parse(out).getroot().iter("tlLogic")
        for q in logic.iter("phase")
        if "G" in str(q.get("state"))
    }
    assert 61.0 in greens


def test_a_changed_phase_sequence_is_refused(tmp_path: Path, district_city: City) -> None:
    bad = _tca_file(district_city, tmp_path / "tca.xml", 20.0, drop_phase=True)
    with pytest.raises(RunError, match="changed the phases"):
        guarded_tca(bad, district_city, tmp_path / "guarded.xml")
