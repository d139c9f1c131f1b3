"""Network variants of a built city: the same city with a patched street network.

:func:`contraflow_city` reverses the inbound lanes of a road for an evacuation: each
chosen (outbound) edge gets the lanes of its opposite edge but one, and the opposite
edge keeps a single lane (for emergency vehicles once contraflow runs; the scenario
sets the permission). The variant is rebuilt from the city's plain XML files by the
same netconvert call as the base city (:func:`city_models.build.build_network`), so
connections, signal plans (redesigned for the new lane counts) and detectors all fit
the new network. Variants are cached inside the base city's folder, by a key of the
base city's content and the patch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from city_models.build import (
    City,
    Progress,
    build_network,
    hash_files,
    load_city,
    signal_spec,
)
from city_models.features import detectors_xml, make_detectors
from city_models.geo import projection_of
from city_models.manifest import MANIFEST_NAME, write_manifest
from city_models.pipeline import IMPORT_PARAMS, build_imported_network, signal_spec_imported
from city_models.plan_check import check_city_plans
from city_models.presets import get_preset
from twin.errors import CityError

log = logging.getLogger(__name__)

VARIANT_VERSION = "1"
VARIANTS_DIR = "variants"


def plain_edge_id(edge_id: str) -> str:
    """The plain-XML edge a SUMO edge comes from (``X_pocket`` is split off ``X``)."""
    return edge_id.removesuffix("_pocket")


def _plain_edges(city: City) -> dict[str, ET.Element]:
    tree = ET.parse(city.path / city.manifest.files.plain_edges)
    return {el.attrib["id"]: el for el in tree.getroot().iter("edge")}


def opposite_edges(city: City, edge_ids: Sequence[str]) -> dict[str, str]:
    """Plain edge id of each given edge -> the plain edge running the other way.

    Raises
    ------
    CityError
        For an edge that is not in the city, or one without an opposite edge.
    """
    plain = _plain_edges(city)
    by_ends = {(el.attrib["from"], el.attrib["to"]): pid for pid, el in plain.items()}
    out: dict[str, str] = {}
    for edge_id in edge_ids:
        pid = plain_edge_id(edge_id)
        if pid not in plain:
            raise CityError(f"Edge {edge_id!r} is not a street of city {city.name}.")
        el = plain[pid]
        back = by_ends.get((el.attrib["to"], el.attrib["from"]))
        if back is None:
            raise CityError(
                f"Edge {edge_id!r} of city {city.name} is one-way: it has no opposite "
                "lanes to reverse."
            )
        out[pid] = back
    return out


def _patch_edges(source: Path, target: Path, pairs: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Write the plain edge file with contraflow; returns plain id -> (lanes before, after)."""
    tree = ET.parse(source)
    edges = {el.attrib["id"]: el for el in tree.getroot().iter("edge")}
    changed: dict[str, tuple[int, int]] = {}

    def set_lanes(el: ET.Element, lanes: int) -> None:
        before = int(el.attrib["numLanes"])
        el.set("numLanes", str(lanes))
        for split in el.iter("split"):  # a left-turn pocket adds one lane at the end
            split.set("lanes", " ".join(str(k) for k in range(lanes + 1)))
        for lane in list(el.iter("lane")):  # an imported city's lane records (plain output)
            if int(lane.attrib.get("index", "0")) >= lanes:
                el.remove(lane)
        changed[el.attrib["id"]] = (before, lanes)

    for out_id, back_id in pairs.items():
        out_el, back_el = edges[out_id], edges[back_id]
        if back_id in pairs:
            raise CityError(f"Contraflow cannot reverse both {out_id!r} and {back_id!r}.")
        lanes_out, lanes_back = int(out_el.attrib["numLanes"]), int(back_el.attrib["numLanes"])
        set_lanes(out_el, lanes_out + max(lanes_back - 1, 0))
        set_lanes(back_el, 1)
    ET.indent(tree, space="  ")
    tree.write(target, encoding="unicode")
    return changed


def variant_key(city: City, kind: str, patch: object) -> str:
    blob = json.dumps(
        {"base": city.manifest.content_hash, "kind": kind, "patch": patch, "v": VARIANT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def contraflow_city(
    city: City, edge_ids: Sequence[str], *, progress: Progress | None = None
) -> City:
    """The city with contraflow on ``edge_ids`` (outbound SUMO or plain edge ids).

    Each edge's opposite keeps one lane; the edge gains the opposite's other lanes. The
    result is cached in ``<city>/variants/contraflow-<key>`` and reused.

    Raises
    ------
    CityError
        For an unknown or one-way edge, or when netconvert fails on the patched network.
    """
    pairs = opposite_edges(city, edge_ids)
    key = variant_key(city, "contraflow", sorted(pairs))
    root = city.path / VARIANTS_DIR
    out = root / f"contraflow-{key}"
    if (out / MANIFEST_NAME).exists():
        return load_city(out)
    say = progress or (lambda msg: log.info("%s", msg))
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        _build_variant(city, tmp, pairs, key=key, say=say)
        try:
            tmp.rename(out)
        except OSError:  # another process built it meanwhile: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_city(out)


def _build_variant(city: City, folder: Path, pairs: dict[str, str], *, key: str,
                   say: Progress) -> None:  # fmt: skip
    m = city.manifest
    files = m.files
    imported = m.source is not None
    preset = IMPORT_PARAMS if imported else get_preset(m.preset)
    for name in (files.plain_nodes, files.plain_types, files.default_routes, files.sumocfg,
                 files.shapes):  # fmt: skip
        if name is not None and (city.path / name).exists():
            shutil.copy2(city.path / name, folder / name)
    for extra in m.source.options.get("own_routes", []) if m.source else []:
        shutil.copy2(city.path / extra, folder / extra)
    for extra in m.source.options.get("own_additional", []) if m.source else []:
        shutil.copy2(city.path / extra, folder / extra)
    changed = _patch_edges(city.path / files.plain_edges, folder / files.plain_edges, pairs)
    say(f"contraflow on {len(pairs)} edges: {changed}")
    if imported:
        net, plans = build_imported_network(folder, files=files, say=say)
    else:
        net, plans = build_network(folder, files=files, preset=preset, seed=m.seed, say=say)
    missing = [p.edge for p in m.pois if p.edge not in net.edges]
    if missing:
        raise CityError(f"The contraflow variant lost the POI edges {missing}.")
    detectors = make_detectors(net, preset=preset)
    (folder / files.detectors).write_text(
        detectors_xml(detectors, period_s=preset.detector_period_s), encoding="utf-8"
    )
    if imported:
        proj = projection_of(m)
        signals = [
            signal_spec_imported(net, p, projection=proj, classes=m.edge_classes) for p in plans
        ]
    else:
        signals = [signal_spec(net, plan, preset=preset) for plan in plans]
    manifest = m.model_copy(
        update={
            "name": f"{m.name}+contraflow-{key[:6]}",
            "cache_key": f"{m.cache_key}+{key}",
            "content_hash": hash_files(folder, [files.net, files.detectors, files.signal_plans]),
            "signals": signals,
            "detectors": detectors,
            "counts": {**m.counts, "signals": len(signals), "edges": len(net.edges),
                       "detectors": len(detectors)},
        }
    )  # fmt: skip
    # a variant with unsafe plans is never cached: refused here, before it is written
    check_city_plans(City(path=folder, manifest=manifest), net_required=True)
    write_manifest(manifest, folder / MANIFEST_NAME)
