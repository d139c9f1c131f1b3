"""The ``twin`` command line. An entry point: it may import every package.

Contract other tools rely on: ``twin run ... --json`` prints one JSON object (with at
least ``run_id``, ``status``, ``metrics``) as the last line on stdout; progress and
messages go to stderr. Exit codes: 0 done, 1 the run failed (recorded), 2 bad input.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from city_models.presets import PRESETS
from twin.config import Settings, load_settings
from twin.errors import TwinError

app = typer.Typer(
    no_args_is_help=True,
    help="CityTwin: a SUMO traffic twin.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
city_app = typer.Typer(no_args_is_help=True, help="Build and inspect city models.")
runs_app = typer.Typer(no_args_is_help=True, help="List and show recorded runs.")
admin_app = typer.Typer(no_args_is_help=True, help="Tenants and API keys of the HTTP API.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants (organisations with keys).")
key_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke, rotate.")
scenarios_app = typer.Typer(no_args_is_help=True, help="The shipped scenarios.")
plot_app = typer.Typer(no_args_is_help=True, help="Pictures of recorded runs.")
app.add_typer(plot_app, name="plot")
app.add_typer(city_app, name="city")
app.add_typer(scenarios_app, name="scenarios")
app.add_typer(runs_app, name="runs")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(tenant_app, name="tenant")
admin_app.add_typer(key_app, name="key")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)  # never break a path across lines
log = logging.getLogger("twin")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory.", envvar="CITYTWIN_DATA", show_envvar=True),
]
DbUrl = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Run store URL, SQLite or PostgreSQL.",
        envvar="CITYTWIN_DB",
        show_envvar=True,
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON (last stdout line).")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        from twin.engine.sumo_tools import sumo_version

        typer.echo(f"citytwin {version('citytwin')} (SUMO {sumo_version()})")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only.")] = False,
) -> None:
    """CityTwin: a SUMO traffic twin."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose else logging.WARNING)  # fmt: skip
    logging.getLogger().setLevel(level)


def _settings(data_dir: Path | None, db: str | None) -> Settings:
    return load_settings(data_dir=data_dir, db_url=db)


# ----------------------------------------------------------------------------- city
@city_app.command("build")
def city_build(
    preset: Annotated[str, typer.Option(help=" | ".join(PRESETS))] = "district",
    seed: Annotated[int, typer.Option(help="Layout seed.")] = 1,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Build into this folder.")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Build a synthetic city (cached by its inputs' hash)."""
    from city_models.build import build_city

    settings = _settings(data_dir, None)
    with err.status("building city…") as status:
        city = build_city(
            preset, seed=seed, out=out_dir, cities_dir=settings.cities_dir, force=force,
            progress=status.update,
        )  # fmt: skip
    m = city.manifest
    info = {"path": str(city.path), "name": m.name, "content_hash": m.content_hash, **m.counts}
    if as_json:
        typer.echo(json.dumps(info))
        return
    table = Table(title=f"City {m.name}", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    table.add_row("note", m.note)
    out.print(table)
    out.print(f"Open it in sumo-gui: sumo-gui -c {city.sumocfg_path}")


@city_app.command("check-peak")
def city_check_peak(
    city_dir: Annotated[
        Path | None, typer.Option("--city", help="A built or imported city folder.")
    ] = None,
    preset: Annotated[
        str, typer.Option(help="Else this preset, built if needed: " + " | ".join(PRESETS))
    ] = "district",
    period: Annotated[str, typer.Option(help="Demand period: am_peak | pm_peak | ...")] = "am_peak",
    scale: Annotated[float, typer.Option(help="× the period's demand.")] = 1.0,
    seeds: Annotated[str, typer.Option(help="Seeds: 1-3, or 1,2,5.")] = "1",
    duration_s: Annotated[float, typer.Option(help="Simulated seconds per run.")] = 3600.0,
    warmup_s: Annotated[float, typer.Option(help="Seconds before measuring.")] = 900.0,
    workers: Annotated[int | None, typer.Option(help="Runs at once (default: cores).")] = None,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Does the city's peak look like a Korean city centre at peak? Background traffic
    only (no EV), fixed-time plans: speeds, v/c, stops/km, intersection delay against
    the targets (docs/CALIBRATION.md). Every run is recorded."""
    from rich.progress import MofNCompleteColumn, TimeElapsedColumn

    from city_models.build import build_city, load_city
    from twin.app.peak import PEAK_TARGETS, check_peak
    from twin.app.study import parse_seeds

    settings = _settings(data_dir, None)
    if city_dir is not None:
        city = load_city(city_dir)
    else:
        with err.status(f"preparing city {preset}…") as status:
            city = build_city(preset, seed=1, cities_dir=settings.cities_dir,
                              progress=status.update)  # fmt: skip
    chosen = parse_seeds(seeds)
    work = settings.data_dir / "check-peak"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err) as bar:  # fmt: skip
        task = bar.add_task(f"check-peak {city.name} {period}", total=len(chosen))
        fraction: dict[str, float] = {}

        def on_progress(run_id: str, done_s: float, total_s: float) -> None:
            fraction[run_id] = done_s / total_s if total_s > 0 else 1.0
            bar.update(task, completed=sum(fraction.values()))

        result = check_peak(
            settings, city, period=period, seeds=chosen, work_dir=work, scale=scale,
            duration_s=duration_s, warmup_s=warmup_s, workers=workers, progress=on_progress,
        )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"Peak check: {city.name}, {period} × {scale:g}, seeds {seeds}")
    for col in ("figure", "measured", "target", "met"):
        table.add_column(col)
    for key, (lo, hi) in PEAK_TARGETS.items():
        value = result[key]
        table.add_row(key, "-" if value is None else f"{value:g}", f"{lo:g}–{hi:g}",
                      "yes" if result["met"][key] else "NO")  # fmt: skip
    out.print(table)
    met = "yes" if result["all_met"] else "no"
    out.print(f"All targets met: {met}; teleports {result['teleports']}, "
              f"mean delay {result['mean_delay_s']} s")  # fmt: skip


@app.command("calibrate")
def calibrate(
    city_dir: Annotated[Path, typer.Option("--city", help="A built or imported city folder.")],
    counts_file: Annotated[
        Path, typer.Option("--counts", help="Counts: CSV or Parquet (site,begin_s,end_s,count).")
    ],
    period: Annotated[str, typer.Option(help="OD model period of the candidates.")] = "am_peak",
    name: Annotated[
        str | None, typer.Option(help="Demand variant name (default counts-PERIOD).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling and SUMO.")] = 1,
    force: Annotated[bool, typer.Option(help="Recalibrate even if stored.")] = False,
    total_from_entries: Annotated[
        bool,
        typer.Option(
            "--total-from-entries/--no-total-from-entries",
            help="Give routeSampler the sum of entry counts as the number of vehicles to "
            "reach (without it the counts alone let fewer vehicles on longer routes "
            "explain them; docs/TWIN.md).",
        ),
    ] = True,
    as_json: JsonOut = False,
) -> None:
    """Calibrate the city's demand to detector counts (SUMO's routeSampler on the OD
    model's routes) and store it as a demand variant; a scenario runs it with
    demand.variant = NAME. Reports GEH per site and interval; exit code 1 when the
    acceptance rule (GEH < 5 on >= 85 %, total within 5 %, plausible vehicles) fails."""
    from city_models.build import load_city
    from city_models.calibrate import CalibrationOptions, calibrate_demand
    from city_models.counts import read_counts

    city = load_city(city_dir)
    counts = read_counts(counts_file, city)  # checked before SUMO starts
    options = CalibrationOptions(period=period, seed=seed, total_from_entries=total_from_entries)
    with err.status("calibrating…") as status:
        variant = calibrate_demand(city, counts, name=name, options=options, force=force,
                                   progress=status.update)  # fmt: skip
    report = variant.report
    if as_json:
        typer.echo(json.dumps({"name": variant.name, "path": str(variant.path), **report}))
    else:
        worst = sorted(report["fits"], key=lambda f: -f["geh"])[:10]
        table = Table(title=f"Worst sites of {variant.name} (of {report['site_intervals']})")
        for col in ("site", "interval s", "counted", "simulated", "GEH"):
            table.add_column(col)
        for f in worst:
            span = f"{f['begin_s']:g}-{f['end_s']:g}"
            counted, simulated = f"{f['counted_veh']:g}", f"{f['simulated_veh']:g}"
            table.add_row(f["site"], span, counted, simulated, f"{f['geh']:.2f}")
        out.print(table)
        out.print(
            f"GEH<5 on {100 * report['geh_lt5_share']:.1f} % of site-intervals (>= 85 %), "
            f"total flow {report['total_flow_err_pct']:+.1f} % (within 5 %), vehicles "
            f"{report['vehicles_generated']} vs sum of entry counts "
            f"{report['entry_count_veh']:g} (ratio {report['vehicles_ratio']:.2f})"
        )
        verdict = "accepted" if variant.accepted else "NOT accepted"
        out.print(f"Demand variant {variant.name!r} {verdict}: {variant.path}")
    if not variant.accepted:
        raise typer.Exit(1)


@city_app.command("show")
def city_show(
    city_dir: Annotated[Path, typer.Argument(help="A built or imported city folder.")],
    width: Annotated[int, typer.Option(help="Map width in characters.")] = 64,
    as_json: JsonOut = False,
) -> None:
    """What a city holds: counts, source, POIs, VMS sites, zones and a small map."""
    from city_models.build import load_city
    from city_models.text_map import text_map

    city = load_city(city_dir)
    m = city.manifest
    info: dict[str, Any] = {
        "path": str(city.path), "name": m.name, "synthetic": m.synthetic,
        "source": m.source.kind if m.source else f"generator {m.generator_version}",
        "origin_lat": m.origin_lat, "origin_lon": m.origin_lon,
        "georeferenced": m.georef is not None or m.synthetic, **m.counts,
    }  # fmt: skip
    if as_json:
        poi_rows = [p.model_dump() for p in m.pois]
        typer.echo(json.dumps({**info, "pois": poi_rows, "vms": [v.id for v in m.vms],
                               "zones": [z.id for z in m.zones]}, ensure_ascii=False))  # fmt: skip
        return
    table = Table(title=f"City {m.name}", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    table.add_row("note", m.note)
    out.print(table)
    poi_table = Table(title="Points of interest")
    for col in ("id", "kind", "name", "edge", "lat", "lon"):
        poi_table.add_column(col)
    for p in m.pois:
        poi_table.add_row(p.id, p.role, p.name, p.edge, f"{p.lat:.5f}", f"{p.lon:.5f}")
    out.print(poi_table)
    out.print(f"VMS sites: {', '.join(v.id for v in m.vms) or 'none'}; "
              f"zones: {', '.join(z.id for z in m.zones) or 'none'}")  # fmt: skip
    out.print(text_map(city, width=width), markup=False, highlight=False)
    out.print("+ signal  H hospital  F fire station  S shelter  V VMS  ~ flood zone")


# ----------------------------------------------------------------------------- plot
def _run_inputs(store: Any, run_id: str) -> dict[str, Any]:
    """What a picture of a recorded run needs: the record, its folder, its net, events."""
    import pandas as pd

    from city_models.net import read_net
    from viz.summary import net_file_of

    record = store.get(run_id)
    if record.run_dir is None or not Path(record.run_dir).is_dir():
        raise typer.BadParameter(f"run {record.id} has no run folder any more")
    run_dir = Path(record.run_dir)
    net_file = net_file_of(run_dir)
    if net_file is None:
        raise typer.BadParameter(f"run {record.id}: its sumo_args.json names no network")
    net = read_net(net_file)
    events = (
        store.read_series(record.id, "events")
        if "events.parquet" in record.series_files
        else pd.DataFrame(columns=["t_s", "kind"])
    )
    return {"record": record, "run_dir": run_dir, "net": net, "events": events}


@plot_app.command("timespace")
def plot_timespace(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    ev: Annotated[str | None, typer.Option("--route", help="An EV id: its route.")] = None,
    edges: Annotated[
        str | None, typer.Option("--edges", help="Corridor edges E1,E2,... (an arterial).")
    ] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="A second run, same corridor, side by side.")
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="PNG or SVG file (by its suffix).")
    ] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Time-space diagram of a corridor: SUMO's signal bands, trajectories, the EV and
    its priority windows (run with --set outputs.trajectories=true)."""
    from viz.timespace import ev_route, read_signal_states, read_trajectories, timespace_figure

    store = _open_store(data_dir, db)
    try:
        runs = [_run_inputs(store, run_id)] + ([_run_inputs(store, compare)] if compare else [])
    finally:
        store.close()
    first = runs[0]
    spec_evs = [e["id"] for e in first["record"].spec.get("evs", [])]
    ev_id = ev or (spec_evs[0] if spec_evs and not edges else None)
    if edges:
        corridor_edges = [e.strip() for e in edges.split(",") if e.strip()]
    elif ev_id:
        corridor_edges = ev_route(first["run_dir"] / "fcd.xml.gz", ev_id)
    else:
        raise typer.BadParameter("give --route EV_ID or --edges E1,E2,...")
    panels = []
    for r in runs:
        rec = r["record"]
        fcd = r["run_dir"] / "fcd.xml.gz"
        trajectories = read_trajectories(fcd, edges=set(corridor_edges)) if fcd.exists() else None
        if trajectories is None:
            err.print(f"run {rec.id}: no trajectories (outputs.trajectories=false): bands only")
        sim = rec.spec.get("sim", {})
        begin = float(sim.get("begin_s", 0.0))
        panels.append({
            "net": r["net"], "edges": corridor_edges,
            "states": read_signal_states(r["run_dir"] / "signal_states.xml"),
            "trajectories": trajectories, "events": r["events"],
            "t_range": (begin, begin + float(sim.get("duration_s", 3600.0))),
            "ev_ids": [ev_id] if ev_id else [],
            "title": f"{rec.scenario_name} ({rec.spec.get('mode', rec.scenario_kind)}) "
                     f"run {rec.id}, seed {rec.seed}",
        })  # fmt: skip
    caption = " | ".join(f"run {r['record'].id} seed {r['record'].seed}" for r in runs)
    fig, _drawn = timespace_figure(panels, caption=f"time-space: {caption}")
    target = out_file or (first["run_dir"] / f"timespace_{ev_id or 'corridor'}.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    out.print(f"Time-space diagram: {target}")


@plot_app.command("heatmap")
def plot_heatmap(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    top: Annotated[int, typer.Option(help="Busiest approaches shown.")] = 30,
    metres: Annotated[bool, typer.Option(help="Queues in metres, not vehicles.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="PNG or SVG file.")] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Queues per approach over time (each minute's largest, read every control tick)."""
    from viz.heatmap import queue_heatmap

    store = _open_store(data_dir, db)
    try:
        r = _run_inputs(store, run_id)
        rec = r["record"]
        if "approach_queues.parquet" not in rec.series_files:
            raise typer.BadParameter(f"run {rec.id} has no approach_queues series (older run)")
        series = store.read_series(rec.id, "approach_queues")
    finally:
        store.close()
    fig, _ = queue_heatmap(series, top=top, metres=metres,
                           title=f"Queues per approach: {rec.scenario_name} on {rec.city_name}",
                           caption=f"run {rec.id} seed {rec.seed}")  # fmt: skip
    target = out_file or r["run_dir"] / "queue_heatmap.png"
    fig.savefig(target, dpi=110)
    out.print(f"Queue heatmap: {target}")


@plot_app.command("delay-map")
def plot_delay_map(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    out_file: Annotated[Path | None, typer.Option("--out", help="PNG or SVG file.")] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """The network coloured by each approach's delay per vehicle (HCM LOS scale)."""
    from viz.heatmap import delay_map

    store = _open_store(data_dir, db)
    try:
        r = _run_inputs(store, run_id)
    finally:
        store.close()
    rec = r["record"]
    delays = (rec.metrics or {}).get("approach_delay_s") or {}
    if not delays:
        raise typer.BadParameter(f"run {rec.id} has no approach_delay_s metric (older run)")
    fig, _ = delay_map(r["net"], delays,
                       title=f"Delay per approach: {rec.scenario_name} on {rec.city_name}",
                       caption=f"run {rec.id} seed {rec.seed}")  # fmt: skip
    target = out_file or r["run_dir"] / "delay_map.png"
    fig.savefig(target, dpi=110)
    out.print(f"Delay map: {target}")


@plot_app.command("speed-map")
def plot_speed_map(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    t: Annotated[
        str | None, typer.Option("--t", help="Moment: seconds or a clock time 08:15:00.")
    ] = None,
    window_s: Annotated[float, typer.Option(help="Mean over this window around --t.")] = 60.0,
    out_file: Annotated[Path | None, typer.Option("--out", help="PNG or SVG file.")] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """The network at a moment, coloured by speed (needs the run's trajectories)."""
    from viz.heatmap import edge_speeds, speed_map
    from viz.timespace import read_trajectories

    store = _open_store(data_dir, db)
    try:
        r = _run_inputs(store, run_id)
    finally:
        store.close()
    rec = r["record"]
    t0 = _sim_time(t, rec)
    traj = read_trajectories(r["run_dir"] / "fcd.xml.gz")
    near = traj[(traj["t_s"] >= t0 - window_s / 2) & (traj["t_s"] <= t0 + window_s / 2)]
    fig, _ = speed_map(r["net"], edge_speeds(near),
                       title=f"Speed at t = {t0:.0f} s (±{window_s / 2:.0f} s): "
                             f"{rec.scenario_name} on {rec.city_name}",
                       caption=f"run {rec.id} seed {rec.seed}")  # fmt: skip
    target = out_file or r["run_dir"] / f"speed_map_{int(t0)}.png"
    fig.savefig(target, dpi=110)
    out.print(f"Speed map: {target}")


def _sim_time(text: str | None, record: Any) -> float:
    """``--t``: seconds of simulated time, or a clock time (``08:15[:00]``) in the run's
    demand period."""
    from city_models.demand import PERIODS
    from scenarios.clock import clock_s

    sim = record.spec.get("sim", {})
    begin = float(sim.get("begin_s", 0.0))
    if text is None:
        return begin + float(sim.get("duration_s", 3600.0)) / 2
    day = clock_s(text)
    if day is not None:
        period = record.spec.get("demand", {}).get("period", "am_peak")
        return day - float(PERIODS.get(period, PERIODS["am_peak"])["start_s"])
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"--t {text!r}: seconds, or a clock time HH:MM[:SS]") from None


@app.command("render")
def render(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    t: Annotated[
        str | None, typer.Option("--t", help="Moment: seconds or a clock time 08:15:00.")
    ] = None,
    follow: Annotated[
        str | None, typer.Option("--follow", help="EV id: the camera follows it.")
    ] = None,
    mp4: Annotated[bool, typer.Option(help="An MP4 from --t on (--seconds, --fps).")] = False,
    seconds: Annotated[float, typer.Option(help="MP4 length in simulated seconds.")] = 60.0,
    fps: Annotated[int, typer.Option(help="MP4 frames per simulated second.")] = 10,
    html: Annotated[bool, typer.Option(help="Also an interactive HTML page.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """A 3D scene of a recorded run (pyvista, off screen): a still PNG, an MP4 following
    an EV, an HTML page. Needs the run's trajectories (--set outputs.trajectories=true)."""
    import pandas as pd

    from viz.scene3d import (
        Scene,
        export_html,
        read_vehicles,
        render_png,
        states_at,
        vehicles_at,
        vms_texts_at,
        write_movie,
    )
    from viz.timespace import read_signal_states

    store = _open_store(data_dir, db)
    try:
        r = _run_inputs(store, run_id)
    finally:
        store.close()
    rec, run_dir = r["record"], r["run_dir"]
    fcd = run_dir / "fcd.xml.gz"
    if not fcd.exists():
        raise typer.BadParameter(
            f"run {rec.id} has no trajectories: run it with --set outputs.trajectories=true"
        )
    from city_models.build import load_city

    city = load_city(r["net"].path.parent)  # the folder of the net the run used
    t0 = _sim_time(t, rec)
    ev_ids = [e["id"] for e in rec.spec.get("evs", [])]
    timelines = read_signal_states(run_dir / "signal_states.xml")
    steps = read_vehicles(fcd, t0 - 1.0, t0 + (seconds if mp4 else 0.0) + 1.0)
    caption = f"run {rec.id} seed {rec.seed} ({rec.scenario_name})"
    signs = pd.read_parquet(run_dir / "vms.parquet") if (run_dir / "vms.parquet").exists() else None
    scene = Scene(city.net, city.manifest, title=f"{rec.scenario_name} on {rec.city_name}",
                  symbol_scale=1.0 if follow else 3.0)  # fmt: skip
    if mp4:
        target = out_file or run_dir / f"scene_{follow or 'city'}_{int(t0)}.mp4"
        n = write_movie(scene, target, steps=steps, timelines=timelines, t0_s=t0,
                        seconds=seconds, fps=fps, ev_ids=ev_ids, follow=follow,
                        caption=caption, signs=signs)  # fmt: skip
        out.print(f"MP4 ({n} frames): {target}")
        return
    scene.update(signal_states=states_at(timelines, t0), vehicles=vehicles_at(steps, t0),
                 ev_ids=ev_ids, follow=follow, caption=f"{caption} t={t0:.0f} s",
                 vms_text=vms_texts_at(signs, t0))  # fmt: skip
    target = out_file or run_dir / f"scene_{follow or 'city'}_{int(t0)}.png"
    render_png(scene, target)
    out.print(f"Scene: {target}")
    if html:
        page = export_html(scene, target.with_suffix(".html"))
        out.print(f"Interactive page: {page}")


# ----------------------------------------------------------------------------- scenarios
@scenarios_app.command("list")
def scenarios_list(as_json: JsonOut = False) -> None:
    """The shipped scenarios: name, kind and what each does."""
    import tomllib

    from scenarios.loader import library_scenarios

    rows = []
    for name, path in library_scenarios().items():
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        rows.append({"name": name, "kind": raw.get("kind", ""),
                     "description": raw.get("description", "")})  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title="Shipped scenarios (twin run NAME; twin scenarios show NAME)")
    for col in ("name", "kind", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], r["description"])
    out.print(table)


@scenarios_app.command("show")
def scenarios_show(
    name: Annotated[str, typer.Argument(help="A shipped scenario's name.")],
) -> None:
    """Print a shipped scenario as its commented TOML: a template to copy and edit."""
    from scenarios.loader import resolve

    typer.echo(resolve(name).read_text(encoding="utf-8"), nl=False)


# ----------------------------------------------------------------------------- import
import_app = typer.Typer(
    no_args_is_help=True,
    help="Import a real city: OpenStreetMap, an engineer's SUMO model, Korean node-link.",
)
city_app.add_typer(import_app, name="import")
PoisOpt = Annotated[
    Path | None,
    typer.Option("--pois", help="POIS.toml: [[pois]] id, kind, lat, lon, name, capacity."),
]
FloodOpt = Annotated[
    Path | None, typer.Option("--flood", help="GeoJSON polygon (lon/lat) of the flood zone.")
]
PeakOpt = Annotated[
    int | None,
    typer.Option(
        "--peak-trips-per-h",
        help="Peak-hour trips of the OD model (default: the calibrated district's load, "
        "116 vehicle-km per hour per lane-km)",
    ),
]
NameOpt = Annotated[str | None, typer.Option("--name", help="City name.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Import into this folder.")]
ForceOpt = Annotated[bool, typer.Option(help="Import again even if cached.")]
BboxOpt = Annotated[
    str | None, typer.Option("--bbox", help="S,W,N,E in degrees (south, west, north, east).")
]


def _import(kind: str, *, data_dir: Path | None, as_json: bool, out_dir: Path | None,
            force: bool, pois: Path | None, flood: Path | None, peak: int | None,
            at: dict[str, float] | None = None, **args: Any) -> None:  # fmt: skip
    from city_models.importing import import_city
    from city_models.pipeline import PipelineOptions, read_report

    settings = _settings(data_dir, None)
    options = PipelineOptions(pois_toml=pois, flood_geojson=flood, peak_trips_per_h=peak)
    if at:
        options = replace(options, origin_lat=at["origin_lat"], origin_lon=at["origin_lon"])
    with err.status(f"importing {kind}…") as status:
        city = import_city(
            kind, out=out_dir, cities_dir=settings.cities_dir, options=options, force=force,
            progress=status.update, **args,
        )  # fmt: skip
    report = read_report(city)
    m = city.manifest
    info: dict[str, Any] = {"path": str(city.path), "name": m.name, **m.counts}
    keys = ("lane_km", "signals_guessed", "signals_joined", "signals_unset_single_stage",
            "osm_signal_nodes", "pois_missing", "edges_outside_core", "georeferenced",
            "input_format", "signals_kept", "signals_source", "crs")  # fmt: skip
    info.update({k: report[k] for k in keys if k in report})
    if as_json:
        typer.echo(json.dumps({**info, "report": report}, ensure_ascii=False))
        return
    table = Table(title=f"City {m.name} ({kind} import)", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    for row in report.get("pois", []):
        table.add_row(
            f"poi {row['id']}", f"{row['name']} -> edge {row['edge']} ({row['snap_m']} m)"
        )
    out.print(table)
    if report.get("hint"):
        err.print(f"[yellow]{rich_escape(report['hint'])}[/yellow]")
    out.print(f"Import report: {city.path / 'import_report.json'}")
    out.print(f"Run a scenario on it: twin run ev_priority --city {city.path}")
    out.print(f"Open it in sumo-gui: sumo-gui -c {city.sumocfg_path}")


@import_app.command("osm")
def import_osm(
    file: Annotated[Path, typer.Argument(help="FILE.osm, FILE.osm.pbf or an Overpass export.")],
    bbox: BboxOpt = None,
    name: NameOpt = None,
    out_dir: OutOpt = None,
    pois: PoisOpt = None,
    flood: FloodOpt = None,
    peak_trips_per_h: PeakOpt = None,
    force: ForceOpt = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Import an OpenStreetMap extract (XML, PBF, Overpass 'out geom')."""
    from city_models.importing import parse_bbox

    _import("osm", data_dir=data_dir, as_json=as_json, out_dir=out_dir, force=force,
            pois=pois, flood=flood, peak=peak_trips_per_h, src=file, bbox=parse_bbox(bbox),
            name=name)  # fmt: skip


@import_app.command("sumo")
def import_sumo(
    net: Annotated[
        Path | None, typer.Argument(help="NET.net.xml[.gz] (or give --sumocfg).")
    ] = None,
    routes: Annotated[list[Path] | None, typer.Option("--routes", help="Route file(s).")] = None,
    additional: Annotated[
        list[Path] | None, typer.Option("--additional", help="Additional file(s), POIs too.")
    ] = None,
    sumocfg: Annotated[Path | None, typer.Option("--sumocfg", help="The model's .sumocfg.")] = None,
    redesign_signals: Annotated[
        bool, typer.Option(help="Replace every program with a Korean-practice plan.")
    ] = False,
    origin: Annotated[
        str | None,
        typer.Option("--origin", help="LAT,LON to place a net without a geo-reference."),
    ] = None,
    name: NameOpt = None,
    out_dir: OutOpt = None,
    pois: PoisOpt = None,
    flood: FloodOpt = None,
    peak_trips_per_h: PeakOpt = None,
    force: ForceOpt = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Import an engineer's SUMO model: its programs stay the fixed plan, its demand stays."""
    if net is None and sumocfg is None:
        raise typer.BadParameter("give NET.net.xml or --sumocfg C.sumocfg")
    at: dict[str, float] = {}
    if origin is not None:
        try:
            lat, lon = (float(v) for v in origin.split(","))
        except ValueError:
            raise typer.BadParameter(f"--origin {origin!r}: expected LAT,LON in degrees") from None
        at = {"origin_lat": lat, "origin_lon": lon}
    _import("sumo", data_dir=data_dir, as_json=as_json, out_dir=out_dir, force=force, pois=pois,
            flood=flood, peak=peak_trips_per_h, at=at, net=net, routes=routes or [],
            additional=additional or [], sumocfg=sumocfg, redesign_signals=redesign_signals,
            name=name)  # fmt: skip


@import_app.command("nodelink")
def import_nodelink(
    node: Annotated[Path, typer.Option("--node", help="MOCT_NODE.shp")],
    link: Annotated[Path, typer.Option("--link", help="MOCT_LINK.shp")],
    turninfo: Annotated[Path | None, typer.Option("--turninfo", help="TURNINFO.dbf")] = None,
    bbox: BboxOpt = None,
    region_code: Annotated[
        str | None, typer.Option("--region-code", help="Keep ids starting with this code.")
    ] = None,
    signals_from: Annotated[
        Path | None, typer.Option("--signals-from", help="OSM file: its traffic_signals nodes.")
    ] = None,
    signals_csv: Annotated[
        Path | None, typer.Option("--signals-csv", help="CSV with a NODE_ID column.")
    ] = None,
    name: NameOpt = None,
    out_dir: OutOpt = None,
    pois: PoisOpt = None,
    flood: FloodOpt = None,
    peak_trips_per_h: PeakOpt = None,
    force: ForceOpt = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Import the Korean standard node-link (MOCT shapefiles)."""
    from city_models.importing import parse_bbox

    _import("nodelink", data_dir=data_dir, as_json=as_json, out_dir=out_dir, force=force,
            pois=pois, flood=flood, peak=peak_trips_per_h, node=node, link=link,
            turninfo=turninfo, bbox=parse_bbox(bbox), region_code=region_code,
            signals_from=signals_from, signals_csv=signals_csv, name=name)  # fmt: skip


# ----------------------------------------------------------------------------- study
def _study(
    spec: Any, city: Any, settings: Settings, *, vary: list[str], seeds: str,
    metrics: list[str], workers: int | None, as_json: bool, source: str,
) -> None:  # fmt: skip
    from rich.progress import MofNCompleteColumn

    from twin.app.compose import execute_request, run_request
    from twin.app.study import parse_seeds, study_table, variants_of, with_overrides
    from twin.engine.executors import run_requests

    cases = variants_of(vary)
    seed_list = parse_seeds(seeds)
    specs = [with_overrides(spec, v.overrides, source=f"{source} --vary {v.label}") for v in cases]
    requests = [run_request(s, city, seed=k) for s in specs for k in seed_list]
    fraction: dict[str, float] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"{len(cases)} variant(s) x {len(seed_list)} seed(s)",
                            total=len(requests))  # fmt: skip

        def on_progress(run_id: str, done_s: float, total_s: float) -> None:
            fraction[run_id] = done_s / total_s if total_s > 0 else 1.0
            bar.update(task, completed=sum(fraction.values()))

        records = run_requests(settings, execute_request, requests, workers=workers,
                               progress=on_progress)  # fmt: skip
    results: dict[str, dict[int, dict[str, Any]]] = {v.label: {} for v in cases}
    runs: dict[str, dict[int, str]] = {v.label: {} for v in cases}
    failed = []
    for k, record in enumerate(records):
        label = cases[k // len(seed_list)].label
        runs[label][record.seed] = record.id
        if record.status == "done" and record.metrics is not None:
            results[label][record.seed] = record.metrics
        else:
            failed.append(f"{record.id} ({label}, seed {record.seed}): {record.error}")
    table = study_table(spec.kind, results, metrics=metrics)
    payload = {
        "scenario": spec.name, "kind": spec.kind, "city": city.name, "seeds": seed_list,
        "variants": [v.label for v in cases], "runs": runs, "failed": failed,
        "table": {label: {m: vars(s) for m, s in row.items()} for label, row in table.items()},
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(payload, default=str, allow_nan=True))
    else:
        ref = cases[0].label
        for label, row in table.items():
            t = Table(title=f"{spec.name} on {city.name}: {label}"
                      f" ({len(results[label])} of {len(seed_list)} seeds)")  # fmt: skip
            for col in ("metric", "mean", "sd", "95 % CI", f"vs {ref} (paired)"):
                t.add_column(col, justify="left" if col == "metric" else "right")
            for name, sm in row.items():
                diff = (
                    f"{sm.diff_mean:+.3g} ± {sm.diff_ci95:.2g}"
                    if sm.diff_mean is not None and sm.diff_mean == sm.diff_mean
                    else ""
                )
                t.add_row(name, f"{sm.mean:.4g}", f"{sm.sd:.3g}", f"± {sm.ci95:.3g}", diff)
            out.print(t)
        out.print(f"{len(records)} runs recorded: twin runs list; ids in --json.")
    if failed:
        err.print(rich_escape("Failed runs:\n" + "\n".join(failed)))
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- fork
@app.command("fork")
def fork(
    run_id: Annotated[
        str, typer.Argument(help="The run to fork (a state saved at --at), or a state file.")
    ],
    variants_file: Annotated[
        Path, typer.Option("--variants", help="V.toml: [variant.NAME] dotted-path overrides.")
    ],
    at_s: Annotated[
        float | None, typer.Option("--at", help="Fork time: a time the run saved a state.")
    ] = None,
    ahead_s: Annotated[float, typer.Option("--ahead", help="Seconds to look ahead.")] = 900.0,
    mode: Annotated[str, typer.Option(help="micro | meso (SUMO's mesoscopic model).")] = "micro",
    workers: Annotated[int | None, typer.Option(help="Forks at once (default: the cores).")] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write each fork's summary report.")
    ] = True,
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """What-if forks from a run's saved state: the null fork (as-is) and each variant,
    in parallel worker processes, compared in one table (docs/TWIN.md, Look ahead)."""
    import math

    from twin.app.fork import load_variants, parent_record, plan_forks, run_forks, to_json
    from twin.app.sweep import progress_bar

    settings = _settings(data_dir, db)
    variants = load_variants(variants_file)
    as_file = Path(run_id)
    source = as_file if as_file.suffix == ".xml" and as_file.is_file() else None
    parent = source if source is not None else parent_record(settings, run_id)
    plan = plan_forks(parent, variants, at_s=at_s, ahead_s=ahead_s, mode=mode)
    with progress_bar(f"{len(plan.requests)} forks of {plan.parent_id} at {plan.at_s:g} s",
                      len(plan.requests), console=err, transient=True) as on_progress:  # fmt: skip
        result = run_forks(settings, plan, workers=workers, progress=on_progress)
    if report:
        for row, rec in zip(result.rows, result.records, strict=True):
            if rec.status == "done":
                try:
                    row["report"] = _write_report(rec, settings)
                except (OSError, ValueError, TwinError) as exc:  # a picture is not the forecast
                    log.warning("fork %s: no report (%s)", rec.id, exc)
    if as_json:
        typer.echo(to_json(result))
    else:
        t = Table(title=f"Forks of {plan.parent_id} at t={plan.at_s:g} s, {plan.ahead_s:g} s "
                  f"ahead ({plan.mode})")  # fmt: skip
        names = list(result.rows[0]["metrics"]) if result.rows else []
        t.add_column("metric")
        for row in result.rows:
            t.add_column(row["variant"], justify="right")
        for name in names:
            cells = []
            for k, row in enumerate(result.rows):
                v, d = row["metrics"][name], row["diff"][name]
                cell = _number(v) if math.isfinite(v) else "-"
                if k and math.isfinite(v) and math.isfinite(d):
                    cell += f" ({d:+.3g})"
                cells.append(cell)
            t.add_row(name, *cells)
        t.add_row("wall_s", *[f"{r['wall_s']:.1f}" for r in result.rows])
        t.add_row("run", *[r["run_id"] for r in result.rows])
        out.print(t)
    if result.failed:
        err.print(rich_escape("Failed forks:\n" + "\n".join(
            f"{r.id}: {r.error}" for r in result.failed)))  # fmt: skip
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- sweep
@app.command("sweep")
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="SWEEP.toml: scenarios x grid x seeds.")],
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dask scheduler tcp://HOST:PORT (workers: --nthreads 1 --resources sumo=1), "
            "or 'local' for a Dask cluster here; default: the local process pool.",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Runs at once on the pool or 'local' (default: cores).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for cells.parquet, summary.parquet [DATA/sweeps/NAME]."),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Run every cell again, also those done already.")
    ] = False,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Add a metric to the table.")
    ] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Run a sweep file: every cell a recorded run; cells done already are skipped.

    Prints mean, 95 % CI and the paired difference per variant; writes the cells and
    the summary as Parquet. Exit 1 when a cell failed (the others are kept)."""
    from twin.app.sweep import (
        default_out_dir,
        load_sweep,
        plan_sweep,
        progress_bar,
        run_cells,
        study_tables,
        write_tables,
    )

    settings = _settings(data_dir, db)
    spec = load_sweep(sweep_file)
    with err.status(f"preparing sweep {spec.name}…"):
        plan = plan_sweep(spec, settings)
    requests = [c.request for c in plan.cells]
    with progress_bar(f"{spec.name}: {len(requests)} cells", len(requests), console=err,
                      transient=True) as on_progress:  # fmt: skip
        try:
            done = run_cells(settings, requests, workers=workers, scheduler=scheduler,
                             resume=not fresh, progress=on_progress)  # fmt: skip
        except KeyboardInterrupt:
            err.print("Interrupted: the cells not ended are recorded failed; run it again.")
            raise typer.Exit(130) from None
    paths = write_tables(plan, done, out_dir or default_out_dir(settings, spec))
    tables = study_tables(plan, done, metrics=metric or [])
    failed = [
        f"{r.id} ({c.scenario} {c.variant}, seed {c.seed}): {r.error}"
        for c, r in zip(plan.cells, done.records, strict=True)
        if r.status != "done"
    ]
    payload = {
        "sweep": spec.name, "cells": len(requests), "resumed": sum(done.resumed),
        "ran": len(requests) - sum(done.resumed), "failed": failed,
        "runs": [r.id for r in done.records],
        **{f"{k}_table": str(p) for k, p in paths.items()},
        "table": {entry: {label: {m: vars(s) for m, s in row.items()}
                          for label, row in table.items()} for entry, table in tables.items()},
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(payload, default=str, allow_nan=True))
    else:
        for entry, table in tables.items():
            ref = next(iter(table), "")
            for label, row in table.items():
                t = Table(title=rich_escape(f"{spec.name}: {entry} {label}"))
                for col in ("metric", "n", "mean", "95 % CI", f"vs {ref} (paired)"):
                    t.add_column(col, justify="left" if col == "metric" else "right")
                for name, sm in row.items():
                    paired = sm.diff_mean is not None and sm.diff_mean == sm.diff_mean
                    diff = f"{sm.diff_mean:+.3g} ± {sm.diff_ci95:.2g}" if paired else ""
                    t.add_row(name, str(sm.n), f"{sm.mean:.4g}", f"± {sm.ci95:.3g}", diff)
                out.print(t)
        out.print(f"{len(requests)} cells ({payload['resumed']} done before, {payload['ran']} "
                  f"run now); tables: {paths['cells']}, {paths['summary']}")  # fmt: skip
    if failed:
        err.print(rich_escape("Failed cells:\n" + "\n".join(failed)))
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- run
def _resolve_city(spec: Any, city_dir: Path | None, settings: Settings) -> Any:
    from city_models.build import build_city, load_city

    if city_dir is not None:
        return load_city(city_dir)
    if spec.city.path:
        return load_city(Path(spec.city.path))
    with err.status(f"preparing city {spec.city.preset} (seed {spec.city.seed})…") as status:
        return build_city(
            spec.city.preset, seed=spec.city.seed, cities_dir=settings.cities_dir,
            progress=status.update,
        )  # fmt: skip


@app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(help="Scenario TOML file, or a shipped name.")],
    city_dir: Annotated[Path | None, typer.Option("--city", help="Built city folder.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    report: Annotated[bool, typer.Option(help="Write summary.html/png.")] = True,
    gui: Annotated[bool, typer.Option(help="Watch it in sumo-gui (traci).")] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="FIELD=VALUE override, e.g. sim.duration_s=600 (repeat)."),
    ] = None,
    vary: Annotated[
        list[str] | None,
        typer.Option("--vary", help="FIELD=V1,V2,...: one variant per value (repeat: all combos)."),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="Seeds of a study: 1-10, or 1,2,5.")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Add a metric to the study table.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Study runs at once (default: cores).")
    ] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Run a scenario (or a study: --vary, --seeds); records every run, prints metrics.

    With --vary and/or --seeds: one run per variant and seed (common random numbers),
    one table with mean, spread, 95 % CI and the paired difference against the first
    variant."""
    from scenarios.loader import load_scenario
    from twin.app.compose import execute_request, run_request
    from twin.app.study import parse_assignment, parse_value, with_overrides
    from twin.engine.executors import LocalProcess

    settings = _settings(data_dir, db)
    spec = load_scenario(scenario)
    overrides = [
        (path, parse_value(value))
        for path, value in (parse_assignment(item, option="--set") for item in set_ or [])
    ]
    spec = with_overrides(spec, overrides, source=f"{scenario} with --set")
    if gui and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise typer.BadParameter(
            "--gui opens sumo-gui, which needs a display (DISPLAY or WAYLAND_DISPLAY is not "
            "set); run without --gui, or open the run afterwards with "
            "'sumo-gui -c <run dir>/run.sumocfg' where there is a screen",
            param_hint="--gui",
        )
    if gui:
        spec = spec.model_copy(update={"sim": spec.sim.model_copy(update={"backend": "traci"})})
    if seed is not None and seed < 0:
        raise typer.BadParameter(f"--seed must be >= 0 (got {seed})")
    run_seed = spec.seed if seed is None else seed
    city = _resolve_city(spec, city_dir, settings)
    if city_dir is not None:  # the record names the city that ran, not the file's preset
        spec = spec.model_copy(
            update={"city": spec.city.model_copy(update={"path": str(city.path.resolve())})}
        )
    if vary or seeds:
        _study(spec, city, settings, vary=vary or [], seeds=seeds or str(run_seed),
               metrics=metric or [], workers=workers, as_json=as_json, source=scenario)  # fmt: skip
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.fields[sim]}"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"{spec.name} on {city.name}", total=spec.sim.duration_s, sim="")

        def on_progress(done_s: float, total_s: float) -> None:
            bar.update(task, completed=done_s, sim=f"{done_s:.0f}/{total_s:.0f} s sim")

        with LocalProcess(settings, execute_request) as executor:
            run_id = executor.submit(run_request(spec, city, seed=run_seed, gui=gui))
            try:
                record = executor.wait(run_id, progress=on_progress)
            except KeyboardInterrupt:
                err.print(f"Interrupted: run {run_id} was stopped and recorded as failed.")
                raise typer.Exit(130) from None
    files: dict[str, str] = {}
    if report and record.run_dir is not None:
        files = _write_report(record, settings)
    payload = {**record.to_dict(), "run_id": record.id, **files}
    if as_json:
        typer.echo(json.dumps(payload, default=str))
    else:
        _print_run(record, files)
    if record.status != "done":
        raise typer.Exit(1)


def _write_report(record: Any, settings: Settings) -> dict[str, str]:
    from twin.engine.store import RunStore
    from viz.summary import write_summary

    store = RunStore.from_settings(settings)
    try:
        frames = {}
        for name in ("network", "queues"):
            if f"{name}.parquet" in record.series_files:
                frames[name] = store.read_series(record.id, name)
        files = write_summary(
            run=record.to_dict(), series=frames.get("network"), queues=frames.get("queues"),
            out_dir=record.run_dir,
        )  # fmt: skip
    finally:
        store.close()
    return {"summary_html": str(files.html), "summary_png": str(files.png)}


def _print_run(record: Any, files: dict[str, str]) -> None:
    table = Table(title=f"Run {record.id} — {record.scenario_name} on {record.city_name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in (record.metrics or {}).items():
        if isinstance(value, dict):
            continue
        shown = (
            f"{value:,.2f}"
            if isinstance(value, float)
            else f"{value:,}"
            if isinstance(value, int)
            else str(value)
        )
        table.add_row(key, shown)
    out.print(table)
    out.print(
        f"status: [bold]{record.status}[/bold]  seed: {record.seed}  run dir: {record.run_dir}"
    )
    if record.error:
        err.print(f"[red]error:[/red] {rich_escape(record.error)}")
    for name, path in files.items():
        out.print(f"{name}: {path}")


# ----------------------------------------------------------------------------- runs
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "baseline": ("mean_delay_s",),
    "ev_priority": ("ev_s_per_km",),
    "vms_diversion": ("incident_queue_max_veh", "diverted_share"),
    "evacuation": ("zone_clearance_s",),
}
"""The metric ``runs list`` shows for each scenario kind (the first one present)."""
_HEADLINE_SHOWN = {
    "mean_delay_s": ("delay", "{:.1f} s"),
    "ev_s_per_km": ("EV", "{:.1f} s/km"),
    "incident_queue_max_veh": ("inc. queue", "{:.0f} veh"),
    "diverted_share": ("diverted", "{:.0%}"),
    "zone_clearance_s": ("clearance", "{:.0f} s"),
}  # what fits a narrow column
EXPORT_FORMATS = ("csv", "parquet", "geojson")


def _headline(record: Any) -> str:
    """The run's headline metric (by its kind), short: ``EV 61.2 s/km``; or ``-``."""
    metrics = record.metrics or {}
    for name in HEADLINE_METRICS.get(record.scenario_kind, ("mean_delay_s",)):
        value = metrics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            label, shown = _HEADLINE_SHOWN[name]
            return f"{label} {shown.format(value)}"
    return "-"


def _cut(value: str, width: int) -> str:
    return value if len(value) <= width else value[: max(1, width - 1)] + "…"


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"


def _open_store(data_dir: Path | None, db: str | None) -> Any:
    from twin.engine.store import RunStore

    return RunStore.from_settings(_settings(data_dir, db))


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many of the newest first.")] = 0,
    status: Annotated[str | None, typer.Option(help="queued | running | done | failed")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this scenario kind.")] = None,
    owner: Annotated[str | None, typer.Option(help="Only runs of this owner.")] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """List recorded runs, newest first (queued ones included): short ids (the unique
    prefix every 'twin runs' command accepts) and each scenario's headline metric."""
    from rich import box

    store = _open_store(data_dir, db)
    try:
        records = store.list(offset=offset, limit=limit, status=status, kind=kind, owner=owner)
        total = store.count(status=status, kind=kind, owner=owner)
        short = store.short_ids([r.id for r in records])
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], default=str))
        return
    shown = f"{offset + 1}-{offset + len(records)} of {total}" if records else f"none of {total}"
    rows = [{"id": short[r.id], "status": r.status, "seed": str(r.seed), "headline": _headline(r),
             "created": r.created_at.strftime("%m-%d %H:%M"), "owner": r.owner or "-",
             "scenario": r.scenario_name, "city": r.city_name} for r in records]  # fmt: skip
    fixed = ["id", "status", "seed", "headline", "created"]
    if any(r.owner for r in records):
        fixed.append("owner")
    used = sum(max([len(c), *(len(row[c]) for row in rows)]) for c in fixed)
    free = out.width - used - 3 * (len(fixed) + 2)  # padding and a rule per column
    if free >= 20:  # room for the scenario and the city
        cut = {"scenario": free * 3 // 5, "city": free - free * 3 // 5}
    else:
        cut = {"scenario": max(8, free + 3)}
    columns = ["id", "status", "scenario", *([] if "city" not in cut else ["city"]), "seed",
               "headline", "created", *(["owner"] if "owner" in fixed else [])]  # fmt: skip
    table = Table(title="Runs", caption=f"runs {shown}, newest first", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)  # fmt: skip
    for col in columns:  # the id is what users copy: never cut
        table.add_column(col, no_wrap=True, justify="right" if col == "seed" else "left")
    for row in rows:
        table.add_row(*[_cut(row[c], cut[c]) if c in cut else row[c] for c in columns])
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix (>= 4 chars).")],
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Show one run: its spec, versions, the city and code it used, status, error and
    metrics."""
    store = _open_store(data_dir, db)
    try:
        record = store.get(run_id)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({**record.to_dict(), "run_id": record.id}, default=str))
        return
    _print_run(record, {})
    used = {"city_path": record.city_path, "city_hash": record.city_hash,
            "city_files_hash": record.city_files_hash,
            "code_commit": record.code_commit}  # fmt: skip
    out.print_json(json.dumps({"spec": record.spec, "versions": record.versions, **used},
                              default=str))  # fmt: skip
    if record.city_files_hash and record.city_files_hash != record.city_hash:
        err.print("[yellow]The city's files differed from its manifest's hash when the run "
                  "was recorded (edited after it was built).[/yellow]")  # fmt: skip


def _shared_metrics(records: list[Any]) -> list[str]:
    """Numeric top-level metrics every run has, in the first run's order."""

    def numeric(r: Any, k: str) -> bool:
        v = (r.metrics or {}).get(k)
        return isinstance(v, int | float) and not isinstance(v, bool)

    first = records[0].metrics or {}
    return [k for k in first if all(numeric(r, k) for r in records)]


@runs_app.command("compare")
def runs_compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids or unique prefixes.")],
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Compare runs side by side: scenario, city, seed and the metrics they share, each
    with its difference against the first run."""
    if len(run_ids) < 2:
        raise typer.BadParameter("give at least two run ids to compare")
    store = _open_store(data_dir, db)
    try:
        records = [store.get(rid) for rid in run_ids]
        short = store.short_ids([r.id for r in records])
    finally:
        store.close()
    names = _shared_metrics(records)
    rows: dict[str, Any] = {}
    for name in names:
        values = [r.metrics[name] for r in records]  # an int stays an int
        rows[name] = {"values": values, "diff": [v - values[0] for v in values]}
    if as_json:
        info = {"runs": [r.id for r in records],
                "scenario": [r.scenario_name for r in records],
                "city": [r.city_name for r in records], "seed": [r.seed for r in records],
                "status": [r.status for r in records], "metrics": rows}  # fmt: skip
        typer.echo(json.dumps(info, default=str))
        return
    table = Table(title=f"Runs compared with {short[records[0].id]}")
    table.add_column("", no_wrap=True, min_width=max(len(n) for n in [*names, "scenario"]))
    for r in records:
        table.add_column(short[r.id], justify="right", overflow="fold")
    table.add_row("scenario", *[r.scenario_name for r in records])
    table.add_row("city", *[r.city_name for r in records])
    table.add_row("seed", *[str(r.seed) for r in records])
    table.add_row("status", *[r.status for r in records], end_section=True)
    for name, row in rows.items():
        cells = [_number(row["values"][0])]
        for value, diff in zip(row["values"][1:], row["diff"][1:], strict=True):
            cells.append(f"{_number(value)} ({'+' if diff >= 0 else ''}{_number(diff)})")
        table.add_row(name, *cells)
    out.print(table)
    if not names:
        err.print("These runs share no numeric metric (not done, or of different kinds).")


def _flat_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows += _flat_metrics(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _metrics_frame(record: Any) -> Any:
    import pandas as pd

    rows = []
    for name, value in _flat_metrics(record.metrics or {}):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        rows.append({"run_id": record.id, "scenario": record.scenario_name,
                     "kind": record.scenario_kind, "city": record.city_name, "seed": record.seed,
                     "metric": name, "value": float(value) if number else None,
                     "text": None if number else json.dumps(value, default=str)})  # fmt: skip
    columns = ["run_id", "scenario", "kind", "city", "seed", "metric", "value", "text"]
    return pd.DataFrame(rows, columns=columns).astype({"value": "float64"})


def _export_tables(record: Any, store: Any, fmt: str, out_path: Path) -> list[Path]:
    """Metrics and every series of the run as CSV or Parquet, a ``run_id`` column in
    each: into folder ``out_path`` (``<run id>_<table>.<ext>``), or, when ``out_path``
    ends in ``.<ext>``, the metrics there and the series beside it."""
    tables = {"metrics": _metrics_frame(record)}
    for file_name in record.series_files:
        name = file_name.removesuffix(".parquet")
        frame = store.read_series(record.id, name)
        frame.insert(0, "run_id", record.id)
        tables[name] = frame
    if out_path.suffix == f".{fmt}":
        out_path.parent.mkdir(parents=True, exist_ok=True)
        targets = {n: out_path if n == "metrics" else out_path.with_name(
            f"{out_path.stem}.{n}.{fmt}") for n in tables}  # fmt: skip
    else:
        out_path.mkdir(parents=True, exist_ok=True)
        targets = {n: out_path / f"{record.id}_{n}.{fmt}" for n in tables}
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(targets[name], index=False)
        else:
            frame.to_parquet(targets[name], engine="pyarrow", index=False)
    return list(targets.values())


def _run_city_dir(record: Any) -> Path:
    from twin.errors import RunError

    city = record.city_path or (record.spec.get("city") or {}).get("path")
    if not city:
        raise RunError(
            f"Run {record.id} does not record its city folder (it was recorded before "
            "runs kept it, on a preset city); rerun it to export it as GeoJSON."
        )
    return Path(city)


def _signal_features(record: Any, store: Any) -> dict[str, Any]:
    """The run's per-signal metrics at the signals of the city it used (lon/lat from
    the city's projection): every metric keyed by signal id, and the max and mean of
    the run's queue series per signal."""
    from city_models.geo import projection_of
    from city_models.manifest import MANIFEST_NAME, read_manifest

    manifest = read_manifest(_run_city_dir(record) / MANIFEST_NAME)
    projection = projection_of(manifest)
    ids = {s.id for s in manifest.signals}
    per_signal: dict[str, dict[str, Any]] = {sid: {} for sid in ids}
    for name, value in (record.metrics or {}).items():
        if isinstance(value, dict) and ids & set(value):
            for sid in ids & set(value):
                per_signal[sid][name] = value[sid]
    if "queues.parquet" in record.series_files:
        queues = store.read_series(record.id, "queues")
        if not queues.empty:
            grouped = queues.groupby("tls_id")["queue_veh"]
            for stat in ("max", "mean"):
                for sid, value in getattr(grouped, stat)().items():
                    if sid in per_signal:
                        per_signal[sid][f"queue_{stat}_veh"] = float(value)
    features = []
    for signal in manifest.signals:
        lon, lat = projection.xy_to_lonlat(signal.x, signal.y)
        props = {"run_id": record.id, "signal": signal.id, **per_signal[signal.id]}
        features.append({"type": "Feature", "id": signal.id, "properties": props,
                         "geometry": {"type": "Point",
                                      "coordinates": [round(lon, 7), round(lat, 7)]}})  # fmt: skip
    return {"type": "FeatureCollection", "run_id": record.id,
            "run": {"id": record.id, "scenario": record.scenario_name,
                    "kind": record.scenario_kind, "city": record.city_name,
                    "seed": record.seed, "status": record.status},
            "features": features}  # fmt: skip


@runs_app.command("export")
def runs_export(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix (>= 4 chars).")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Folder, or file: X.geojson, X.csv, X.parquet.")
    ],
    fmt: Annotated[str, typer.Option("--format", help="csv | parquet | geojson")] = "csv",
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Export a run: its metrics and series (csv, parquet: one table each, a run_id
    column in every one), or its per-signal metrics at the signals of its city
    (geojson: points, lon/lat)."""
    from twin.engine.store import jsonable

    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"--format {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}")
    store = _open_store(data_dir, db)
    try:
        record = store.get(run_id)
        if fmt == "geojson":
            target = out_path if out_path.suffix else out_path / f"{record.id}_signals.geojson"
            collection = _signal_features(record, store)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(jsonable(collection), allow_nan=False), encoding="utf-8")
            files = [target]
        else:
            files = _export_tables(record, store, fmt, out_path)
    finally:
        store.close()
    for path in files:
        log.info("run %s exported (%s): %s", record.id, fmt, path)
    if as_json:
        typer.echo(json.dumps({"run_id": record.id, "format": fmt,
                               "files": [str(p) for p in files]}))  # fmt: skip
        return
    for path in files:
        out.print(f"{path}", highlight=False)


@runs_app.command("rm")
def runs_rm(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids or unique prefixes.")],
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Remove ended runs: their records and run folders (asks nothing). A queued or
    running run is kept (cancel it first); exit code 1 if any run was kept."""
    removed, kept = _remove(_open_store(data_dir, db), run_ids)
    _print_removed(removed, kept, as_json)
    if kept:
        raise typer.Exit(1)


@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[
        float, typer.Option("--older-than", help="Remove runs created over DAYS days ago.")
    ],
    status: Annotated[str | None, typer.Option(help="Only done or only failed runs.")] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Remove the ended (done and failed) runs created more than DAYS days ago, records
    and run folders (asks nothing); queued and running runs are never touched."""
    from datetime import UTC, datetime, timedelta

    if not older_than >= 0:
        raise typer.BadParameter(f"--older-than must be >= 0 days (got {older_than})")
    store = _open_store(data_dir, db)
    cutoff = datetime.now(UTC) - timedelta(days=older_than)
    try:
        ids = [r.id for r in store.ended_before(cutoff, status=status)]
    except Exception:
        store.close()
        raise
    removed, kept = _remove(store, ids)
    _print_removed(removed, kept, as_json)
    if kept:
        raise typer.Exit(1)


def _remove(store: Any, run_ids: list[str]) -> tuple[list[Any], dict[str, str]]:
    """Delete each run (closing the store after); the removed records and, for each id
    kept, why."""
    from twin.errors import RunError, RunNotFoundError

    removed, kept = [], {}
    try:
        for rid in run_ids:
            try:
                removed.append(store.delete(rid))
            except (RunError, RunNotFoundError) as exc:
                kept[rid] = str(exc).strip("'\"")
    finally:
        store.close()
    return removed, kept


def _print_removed(removed: list[Any], kept: dict[str, str], as_json: bool) -> None:
    for reason in kept.values():
        err.print(f"kept: {rich_escape(reason)}", highlight=False)
    if as_json:
        typer.echo(json.dumps({"removed": [r.id for r in removed], "kept": kept}))
        return
    for r in removed:
        where = f" and {r.run_dir}" if r.run_dir is not None else ""
        out.print(f"removed {r.id} ({r.status}, {r.scenario_name}){where}", highlight=False)
    out.print(f"{len(removed)} run(s) removed", highlight=False)


# ----------------------------------------------------------------------------- serve
@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="HTTP worker processes.")] = 1,
    run_workers: Annotated[
        int | None, typer.Option(help="Runs at once [env CITYTWIN_RUN_WORKERS; default: cores].")
    ] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Serve the sandbox HTTP API (OpenAPI page at /docs): runs from a queue in the run
    store, each in its own worker process."""
    from twin.app.api.server import serve as serve_api

    if not 1 <= port <= 65535:
        raise typer.BadParameter(f"--port must be 1-65535 (got {port})")
    if workers < 1:
        raise typer.BadParameter(f"--workers must be >= 1 (got {workers})")
    logging.getLogger().setLevel(logging.INFO)
    serve_api(_api_settings(data_dir, db, run_workers=run_workers), host=host, port=port,
              workers=workers)  # fmt: skip


def _api_settings(data_dir: Path | None, db: str | None, **more: Any) -> Any:
    from twin.app.api.settings import load_api_settings

    given = {"data": data_dir, "db": db, **more}
    return load_api_settings(**{k: v for k, v in given.items() if v is not None})


def _api_db(data_dir: Path | None, db: str | None) -> tuple[Any, Any]:
    from twin.app.api.db import ApiDatabase

    settings = _api_settings(data_dir, db)
    return settings, ApiDatabase(settings.engine_settings().db_url)


# ----------------------------------------------------------------------------- admin
@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '_' or '-'.")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Create a tenant with the default quotas (docs/API.md)."""
    from twin.app.api.keys import create_tenant

    _, api_db = _api_db(data_dir, db)
    try:
        quotas = create_tenant(api_db, name)
    finally:
        api_db.close()
    err.print(f"tenant {name} created; quotas: {quotas}")
    typer.echo(name)


@tenant_app.command("list")
def tenant_list(data_dir: DataDir = None, db: DbUrl = None) -> None:
    """List the tenants."""
    from twin.app.api.keys import tenant_names

    _, api_db = _api_db(data_dir, db)
    try:
        for name in tenant_names(api_db):
            typer.echo(name)
    finally:
        api_db.close()


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="The key's tenant.")],
    role: Annotated[str, typer.Option(help="operator | fire | police | researcher | admin")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Create an API key; prints it once, alone on the last stdout line."""
    from twin.app.api.keys import create_key

    settings, api_db = _api_db(data_dir, db)
    try:
        info, key = create_key(api_db, settings.secret, tenant=tenant, role=role)
    finally:
        api_db.close()
    err.print(f"key {info.id} ({role}) for tenant {tenant}; shown once, store it now:")
    typer.echo(key)


@key_app.command("list")
def key_list(
    tenant: Annotated[str, typer.Option(help="The tenant whose keys to list.")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """List a tenant's keys (prefixes, never the keys)."""
    from twin.app.api.keys import list_keys

    _, api_db = _api_db(data_dir, db)
    try:
        keys = list_keys(api_db, tenant=tenant)
    finally:
        api_db.close()
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "live"
        typer.echo(f"{k.id}  {k.prefix}...  {k.role}  {state}")


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Revoke a key: every request with it fails from now on."""
    from twin.app.api.keys import revoke_key

    _, api_db = _api_db(data_dir, db)
    try:
        revoke_key(api_db, key_id)
    finally:
        api_db.close()
    err.print(f"key {key_id} revoked")


@key_app.command("rotate")
def key_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Replace a key by a new one (same tenant and role; the old one is revoked at once);
    prints the new key alone on the last stdout line."""
    from twin.app.api.keys import rotate_key

    settings, api_db = _api_db(data_dir, db)
    try:
        info, key = rotate_key(api_db, settings.secret, key_id)
    finally:
        api_db.close()
    err.print(f"key {key_id} revoked; new key {info.id}, shown once, store it now:")
    typer.echo(key)


# ----------------------------------------------------------------------------- live
live_app = typer.Typer(
    invoke_without_command=True,
    help="Live mode: the center loop against field controllers (docs/LIVE.md).",
)
app.add_typer(live_app, name="live")
ClockEpoch = Annotated[
    float | None, typer.Option("--epoch", help="Wall time at which the clock reads --origin.")
]
ClockOrigin = Annotated[float | None, typer.Option("--origin", help="Clock reading at --epoch.")]


@live_app.callback()
def live(
    ctx: typer.Context,
    city_dir: Annotated[Path | None, typer.Option("--city", help="Built city folder.")] = None,
    field_file: Annotated[Path | None, typer.Option("--field", help="FIELD.toml.")] = None,
    audit: Annotated[Path | None, typer.Option(help="Audit log (default: data dir).")] = None,
    mqtt_host: Annotated[str, typer.Option(help="MQTT broker.")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="No broker client.")] = False,
    api_port: Annotated[int, typer.Option(help="API port (0: any free one).")] = 8100,
    no_api: Annotated[bool, typer.Option("--no-api", help="Serve no API.")] = False,
    control: Annotated[str, typer.Option(help="fixed | adaptive")] = "fixed",
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Run the shadow twin (SUMO at the clock's pace).")
    ] = False,
    shadow_demand: Annotated[
        str | None,
        typer.Option(
            "--shadow-demand",
            help="The shadow's demand: a calibrated demand variant of the city (e.g. one "
            "POST /v1/live/calibrations stored); default the OD model's AM peak.",
        ),
    ] = None,
    tenant: Annotated[str, typer.Option(help="The API tenant that owns live mode.")] = "city",
    speed: Annotated[float, typer.Option(help="Clock speed (tests, demos).")] = 1.0,
    epoch: ClockEpoch = None,
    origin: ClockOrigin = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Run the live service: ingest GPS and detectors, run the center loop in real time,
    command the controllers of FIELD.toml, publish SPaT; Ctrl-C hands every signal back."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from city_models.build import load_city
    from twin.app.live.clock import LiveClock
    from twin.app.live.emulator import clock_from_args
    from twin.app.live.field import load_field
    from twin.app.live.run import serve_live
    from twin.app.live.service import LiveOptions

    if city_dir is None or field_file is None:
        raise typer.BadParameter("twin live needs --city DIR and --field FIELD.toml")
    if control not in ("fixed", "adaptive"):
        raise typer.BadParameter(f"--control {control!r}; allowed: fixed, adaptive")
    logging.getLogger().setLevel(logging.INFO)
    settings = _settings(data_dir, db)
    api = None if no_api else _api_settings(data_dir, db, run_workers=0)
    secret = (api or _api_settings(data_dir, db)).secret
    city = load_city(city_dir)
    cfg = load_field(field_file, city)
    clock: LiveClock = clock_from_args(epoch, speed, origin)
    options = LiveOptions(
        mqtt_host=None if no_mqtt else mqtt_host, mqtt_port=mqtt_port,
        control=control,  # type: ignore[arg-type]
        tenant=tenant, shadow=shadow or shadow_demand is not None,
        shadow_demand=shadow_demand, runs=settings,
    )  # fmt: skip
    if shadow_demand is not None:  # a missing variant is bad input, before anything starts
        from twin.app.live.shadow import shadow_scenario

        shadow_scenario(city, shadow_demand)
    audit_path = audit or settings.data_dir / "live" / "audit.jsonl"
    summary = asyncio.run(
        serve_live(city, cfg, clock=clock, audit_path=audit_path, secret=secret,
                   options=options, api=api, api_port=api_port)
    )  # fmt: skip
    err.print(f"live service stopped; {summary['audit_records']} audit records written")


@live_app.command("demo")
def live_demo(
    speed: Annotated[float, typer.Option(help="Replay this many times faster.")] = 1.0,
    city_dir: Annotated[Path | None, typer.Option("--city", help="Built city folder.")] = None,
    mqtt_host: Annotated[str, typer.Option(help="MQTT broker.")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    workdir: Annotated[Path | None, typer.Option(help="Where the demo writes.")] = None,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Emulator + live service + broker client; an ambulance (from a simulated
    ev_priority run) replayed as GPS; per signal: requested, granted, shown; the EV's
    s/km and the emulator's MMU verdict."""
    import asyncio
    import tempfile

    from city_models.build import build_city, load_city
    from twin.app.live.demo import run_demo

    if not 0.1 <= speed <= 50:
        raise typer.BadParameter(f"--speed must be in [0.1, 50] (got {speed})")
    settings = _settings(data_dir, None)
    if city_dir is not None:
        city = load_city(city_dir)
    else:
        with err.status("preparing city district (seed 1)…"):
            city = build_city("district", seed=1, cities_dir=settings.cities_dir)
    work = workdir or Path(tempfile.mkdtemp(prefix="citytwin-live-demo-"))
    result = asyncio.run(
        run_demo(city, data_dir=settings.data_dir, workdir=work, speed=speed,
                 mqtt_host=mqtt_host, mqtt_port=mqtt_port,
                 say=lambda m: err.print(m, highlight=False))
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result.as_dict(), default=str))
    if result.mmu.get("violations", 1) != 0 or not result.audit_ok:
        raise typer.Exit(1)


@app.command("emulate-controllers")
def emulate_controllers(
    city_dir: Annotated[Path, typer.Option("--city", help="Built city folder.")],
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    base_port: Annotated[int, typer.Option(help="First UDP port (0: any free ones).")] = 16100,
    admin_port: Annotated[int, typer.Option(help="Admin port (JSON lines over TCP).")] = 16099,
    community: Annotated[str, typer.Option(help="SNMPv2c community.")] = "citytwin",
    backup_time: Annotated[int, typer.Option(help="unitBackupTime at power-up (s).")] = 10,
    write_field: Annotated[
        Path | None, typer.Option(help="Write a FIELD.toml for these controllers.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Clock speed (tests, demos).")] = 1.0,
    epoch: ClockEpoch = None,
    origin: ClockOrigin = None,
) -> None:
    """Serve every city signal as an NTCIP 1202 SNMP agent on loopback, running the city's
    own plans, obeying Hold/ForceOff/VehCall and the backup timer, with its own MMU."""
    import asyncio

    from city_models.build import load_city
    from twin.app.live.emulator import clock_from_args, run_emulator

    logging.getLogger().setLevel(logging.INFO)
    city = load_city(city_dir)
    verdict = asyncio.run(
        run_emulator(city, clock=clock_from_args(epoch, speed, origin), host=host,
                     base_port=base_port, admin_port=admin_port, community=community,
                     backup_time_s=backup_time, field_out=write_field)
    )  # fmt: skip
    err.print(f"MMU verdict: {verdict['violations']} violation(s) in "
              f"{verdict['changes_checked']} changes checked")  # fmt: skip
    if verdict["violations"]:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- main
def _json_error(message: str) -> None:
    """With ``--json``: the error as the last stdout line, for tools that read it."""
    if "--json" in sys.argv[1:]:
        typer.echo(json.dumps({"status": "error", "error": message}))


def main() -> None:
    """Console entry point: user errors become one clear paragraph, exit code 2 (with
    ``--json`` also ``{"status": "error", "error": ...}`` as the last stdout line)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(standalone_mode=False)
    except TwinError as exc:
        err.print(f"[red]Error:[/red] {rich_escape(str(exc))}", highlight=False)
        _json_error(str(exc))
        sys.exit(2)
    except typer.TyperException as exc:  # bad usage or parameter: typer's own display
        from typer import rich_utils

        if hasattr(exc, "show"):
            rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        else:
            err.print(f"Error: {rich_escape(exc.format_message())}", highlight=False)
        _json_error(exc.format_message())
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        _json_error("Aborted.")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
