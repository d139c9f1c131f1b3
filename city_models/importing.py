"""One entry for every importer: cache lookup, the source, then the shared pipeline.

``import_city("osm", src=...)`` / ``("sumo", net=...)`` / ``("nodelink", node=..., link=...)``
returns a built :class:`~city_models.build.City`; a second import of the same files with
the same options returns the cached folder at once.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from city_models.build import City
from city_models.importers.base import SourceNet, file_sha256
from city_models.importers.nodelink import read_nodelink
from city_models.importers.osm import read_osm
from city_models.importers.sumo_model import read_sumo_model
from city_models.pipeline import (
    PipelineOptions,
    cached_import,
    finish_city,
    import_key,
)
from twin.errors import CityError

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
KINDS = ("osm", "sumo", "nodelink")


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``"S,W,N,E"`` (degrees) -> a tuple, checked; ``None`` passes through."""
    if text is None or text == "":
        return None
    parts = text.split(",")
    try:
        s, w, n, e = (float(p) for p in parts)
    except ValueError:
        raise CityError(
            f"--bbox {text!r}: expected four numbers S,W,N,E (south, west, north, east in "
            "degrees), e.g. 37.26,127.02,37.28,127.04."
        ) from None
    if not (-90 <= s < n <= 90 and -180 <= w < e <= 180):
        raise CityError(
            f"--bbox {text!r}: need -90 <= S < N <= 90 and -180 <= W < E <= 180 "
            "(the order is S,W,N,E)."
        )
    return (s, w, n, e)


def _files_of(kind: str, args: dict[str, Any]) -> list[Path]:
    keys = {
        "osm": ["src"],
        "sumo": ["net", "routes", "additional", "sumocfg"],
        "nodelink": ["node", "link", "turninfo", "signals_from", "signals_csv"],
    }[kind]
    out: list[Path] = []
    for k in keys:
        v = args.get(k)
        if v is None:
            continue
        for p in v if isinstance(v, list | tuple) else [v]:
            path = Path(p)
            if not path.exists():
                raise CityError(
                    f"{kind} import: the file {path} (--{k.replace('_', '-')}) does not exist."
                )
            out.append(path)
            if kind == "nodelink" and path.suffix.lower() == ".shp":
                for side in (".dbf", ".shx", ".prj", ".cpg"):
                    if path.with_suffix(side).exists():
                        out.append(path.with_suffix(side))
    return out


def import_city(
    kind: str,
    *,
    out: Path | None = None,
    cities_dir: Path | None = None,
    options: PipelineOptions | None = None,
    force: bool = False,
    progress: Progress | None = None,
    **args: Any,
) -> City:
    """Import a city from a source of ``kind`` (osm | sumo | nodelink).

    ``args`` are the importer's own: osm ``src``, ``bbox``; sumo ``net``, ``routes``,
    ``additional``, ``sumocfg``, ``redesign_signals``, ``fit_signals``; nodelink ``node``, ``link``,
    ``turninfo``, ``bbox``, ``region_code``, ``signals_from``, ``signals_csv``; all
    ``name``. The city lands in ``out`` or ``<cities_dir>/<name>-<key>``.
    """
    if kind not in KINDS:
        raise CityError(f"Unknown importer {kind!r}; allowed: {', '.join(KINDS)}.")
    options = options or PipelineOptions()
    say = progress or (lambda msg: log.info("%s", msg))
    files = _files_of(kind, args)
    hashes = {f"{i}:{p.name}": file_sha256(p) for i, p in enumerate(files)}
    plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items()
             if k not in ("src", "net", "node", "link", "routes", "additional", "sumocfg",
                          "turninfo", "signals_from", "signals_csv")}  # fmt: skip
    key = import_key(kind, hashes, {**plain, **options.to_dict()})
    name = args.get("name") or _default_name(kind, args)
    if out is None:
        if cities_dir is None:
            raise CityError("import_city needs out= or cities_dir=.")
        out = cities_dir / f"{name}-{key}"
    if not force:
        cached = cached_import(out, key)
        if cached is not None:
            say(f"reusing the imported city {out}")
            return cached
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".source-", dir=out.parent))
    try:
        say(f"reading the {kind} source")
        source = _read_source(kind, work=work, name=name, args=args)
        return finish_city(source, out=out, options=options, key=key, say=say)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _default_name(kind: str, args: dict[str, Any]) -> str:
    first = args.get("src") or args.get("net") or args.get("sumocfg") or args.get("link") or kind
    stem = Path(str(first)).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or kind


def _read_source(kind: str, *, work: Path, name: str, args: dict[str, Any]) -> SourceNet:
    if kind == "osm":
        return read_osm(Path(args["src"]), work=work, bbox=args.get("bbox"), name=name)
    if kind == "sumo":
        net = args.get("net")
        return read_sumo_model(
            Path(net) if net else None,  # None: the sumocfg's net-file
            work=work,
            routes=[Path(p) for p in args.get("routes") or []],
            additional=[Path(p) for p in args.get("additional") or []],
            sumocfg=Path(args["sumocfg"]) if args.get("sumocfg") else None,
            name=name,
            redesign_signals=bool(args.get("redesign_signals", False)),
            fit_signals=bool(args.get("fit_signals", False)),
        )
    return read_nodelink(
        Path(args["node"]),
        Path(args["link"]),
        work=work,
        turninfo=Path(args["turninfo"]) if args.get("turninfo") else None,
        bbox=args.get("bbox"),
        region_code=args.get("region_code"),
        signals_from=Path(args["signals_from"]) if args.get("signals_from") else None,
        signals_csv=Path(args["signals_csv"]) if args.get("signals_csv") else None,
        name=name,
    )
