"""Contraflow network variants: lanes moved, plans and detectors rebuilt, base untouched."""

from __future__ import annotations

import pytest

from city_models.build import City, hash_files
from city_models.variants import contraflow_city, opposite_edges
from twin.errors import CityError


def test_contraflow_moves_lanes_and_rebuilds_signals_and_detectors(district_city: City) -> None:
    before = district_city.manifest.content_hash
    files = district_city.manifest.files
    # (the evacuation scenario's default road on this city: the variant is then cached)
    variant = contraflow_city(district_city, ["n3_5-n3_6", "n3_6-n3_7"])
    base_net, net = district_city.net, variant.net
    assert net.edges["n3_5-n3_6"].lanes == base_net.edges["n3_5-n3_6"].lanes + 2  # 3 + (3 - 1)
    assert net.edges["n3_6-n3_5"].lanes == 1
    assert len(variant.manifest.signals) == len(district_city.manifest.signals)
    lanes = set(net.lane_lengths_m)
    assert all(d.lane in lanes for d in variant.manifest.detectors)
    for sig in variant.manifest.signals:  # plans fit the new link counts
        assert all(len(p.state) == len(net.tls[sig.id].links) for p in sig.phases)
    # the base city is untouched, and a second call reuses the cached variant
    assert (
        hash_files(district_city.path, [files.net, files.detectors, files.signal_plans]) == before
    )
    assert contraflow_city(district_city, ["n3_6-n3_7", "n3_5-n3_6"]).path == variant.path


def test_unknown_edges_are_refused(district_city: City) -> None:
    with pytest.raises(CityError, match="'no_such_edge' is not a street"):
        opposite_edges(district_city, ["no_such_edge"])
