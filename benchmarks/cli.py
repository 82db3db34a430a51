"""``python -m benchmarks``: choose the figures and the sizes, run them, write the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import benchmarks
from benchmarks import backbone, decode, e2e, feature_cache, memory, serve
from benchmarks.harness import (DEFAULT_MAX_ROWS, Settings, fmt, goal_text, load_average,
                                machine_info, met_text, parallel_capacity, replicate_dataset,
                                skipped, usable_photo_paths)
from benchmarks.report import (BENCHMARKS, SCHEMA_VERSION, findings, merge_reports,
                               write_report)
from shared import environment
from shared.io import write_json_atomic


@contextlib.contextmanager
def private_cache(workdir: Path):
    """Point AIRBNB_DL_CACHE at a fresh folder for the run; copy only the converted weights."""
    # TensorFlow: the benchmark runner loads it only when a benchmark needs the weights
    from shared.features.backbones import efficientnet_lite as lite
    from shared.features.backbones import efficientnet_lite_weights as lite_weights

    previous, sources = os.environ.get("AIRBNB_DL_CACHE"), {}
    for name, variant in lite.VARIANTS.items():
        with contextlib.suppress(Exception):
            sources[name] = lite_weights.cached_weights_path(variant)
    cache = workdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["AIRBNB_DL_CACHE"] = str(cache)
    for name, source in sources.items():
        with contextlib.suppress(Exception):
            target = lite_weights.cached_weights_path(lite.VARIANTS[name])
            if source.is_file() and not target.exists():
                shutil.copy2(source, target)
    try:
        yield cache
    finally:
        if previous is None:
            os.environ.pop("AIRBNB_DL_CACHE", None)
        else:
            os.environ["AIRBNB_DL_CACHE"] = previous


def dataset_label(data_dir: Path) -> dict:
    """How the report names its dataset: directory name (project-relative path when inside the
    project), the rows of ``listings.csv`` and its sha256, never a machine's absolute path."""
    from shared.data.dataset import read_listings_csv
    from shared.run.records import dataset_location
    from shared.io import sha256_file

    return {**dataset_location(data_dir), "rows": int(len(read_listings_csv(Path(data_dir)))),
            "listings_sha256": sha256_file(Path(data_dir) / "listings.csv")}


def run_benchmarks(data_dir: Path, settings: Settings, selected: list[str], workdir: Path,
                   log=print) -> dict:
    """Run the ``selected`` benchmarks; return the benchmarks.json document.

    With ``settings.rows`` (quick mode) every figure works on the first ``rows`` listings,
    written once into ``workdir``. Otherwise decode, backbone and feature_cache use the whole
    dataset, memory and e2e its first ``settings.max_rows`` rows.
    """
    started = time.time()
    report = {"schema_version": SCHEMA_VERSION,
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
              "machine": machine_info(), "settings": settings.to_json(),
              "dataset": dataset_label(data_dir), "benchmarks": selected,
              "partial": selected != list(BENCHMARKS), "load_average": {"start": load_average()},
              "parallel_capacity": {"start": parallel_capacity()}, "results": []}
    from shared.run.config import SEED
    from shared.run.devices import configure_determinism, setup_devices

    setup_devices()  # the same device setup as every training entry point
    configure_determinism(SEED)
    with private_cache(workdir):
        data = data_dir
        if settings.rows:
            data = Path(replicate_dataset(data_dir, workdir / "data-1x", 1, settings.rows)["data_dir"])
        photos_measured = bool({"decode", "backbone"} & set(selected))
        paths = usable_photo_paths(data, settings.photos) if photos_measured else []
        steps = {"decode": lambda: [decode.run(paths, settings)],
                 "backbone": lambda: [backbone.run(paths[:settings.backbone_photos], settings,
                                                   workdir)],
                 "feature_cache": lambda: [feature_cache.run(data, settings, workdir,
                                                             warm=photos_measured)],
                 "memory": lambda: memory.run(data, settings, workdir,
                                              warm="feature_cache" in selected),
                 "serve": lambda: serve.run(data, settings, workdir),
                 "e2e": lambda: e2e.run(data, settings, workdir)}
        for name in selected:
            report["results"] += _run_step(name, steps[name], log)
            write_json_atomic(workdir / "benchmarks.partial.json", report)  # progress so far
    report["load_average"]["end"] = load_average()
    report["parallel_capacity"]["end"] = parallel_capacity()
    report["seconds"] = round(time.time() - started, 1)
    report["findings"] = findings(report["results"])
    return report


def _run_step(name: str, step, log) -> list[dict]:
    """The figures of one benchmark, with the load and parallel capacity around them; a failed
    benchmark gives one skipped figure with the first line of its error (the run goes on)."""
    load_before = load_average()
    log(f"[bench] {name} ... (load {load_before})")
    capacity = parallel_capacity()["speedup"]
    start = time.perf_counter()
    try:
        figures = step()
    except Exception as exc:  # noqa: BLE001 - one failed figure must not lose the run
        log(traceback.format_exc())
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        figures = [skipped(name, f"{name} (failed)",
                           f"failed: {type(exc).__name__}: {first_line[:300]}")]
    for fig in figures:
        fig["seconds"] = round(time.perf_counter() - start, 1)
        fig["load_average"] = {"before": load_before, "after": load_average()}
        fig["parallel_capacity_before"] = capacity
        ratio = "skipped" if fig["skipped"] else fmt(fig["ratio"], "x", 2)
        log(f"[bench]   {fig['id']}: {ratio} (goal {goal_text(fig)}: {met_text(fig['met'])}; "
            f"{fig['seconds']:.0f} s)")
    return figures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=benchmarks.__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one repetition, no deliverable runs (CI); temp output")
    parser.add_argument("--out", help="output folder (default: docs/ for a full run, a temporary "
                                      "folder otherwise)")
    parser.add_argument("--data-dir", help="dataset directory (default: $AIRBNB_DATA_DIR or data/)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the deliverable runs")
    parser.add_argument("--repeats", type=int, help="timed repetitions per speed figure")
    parser.add_argument("--memory-repeats", type=int, help="subprocess runs per memory size")
    parser.add_argument("--photos", type=int, help="photos for decode/backbone (default: all)")
    parser.add_argument("--replication", type=int, help="size factor of the large dataset (8)")
    parser.add_argument("--max-rows", type=int,
                        help="rows of the dataset (the first ones) the memory and e2e figures "
                             f"train on, whatever its size (default {DEFAULT_MAX_ROWS}; the "
                             "large memory copy has --replication times as many)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary folder")
    parser.add_argument("--e2e-smoke", action="store_true",
                        help="development: run the deliverables with --smoke (never a full run)")
    parser.add_argument("--merge-into", help="a folder with a full run's benchmarks.json (e.g. "
                        "docs): merge the figures of this (partial) run into it, replacing those "
                        "of the same id; same CPU model and dataset only")
    parser.add_argument("--from-json", help="re-render benchmarks.md from this benchmarks.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        report["findings"] = findings(report.get("results", []))  # derived from the results
        out = Path(args.out) if args.out else Path(args.from_json).parent
        md, _ = write_report(report, out)
        print(f"rendered {md}")
        return 0

    if args.max_rows is not None and args.max_rows < 1:
        print(f"benchmarks: error: --max-rows must be >= 1, got {args.max_rows}", file=sys.stderr)
        return 2
    selected = [b.strip() for b in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        print(f"benchmarks: unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    if args.quick or args.skip_e2e:
        selected = [b for b in selected if b != "e2e"]
    selected = [b for b in BENCHMARKS if b in selected]
    full = not args.quick and selected == list(BENCHMARKS) and not any(
        (args.repeats, args.photos, args.replication, args.memory_repeats, args.e2e_smoke,
         args.max_rows))
    if args.merge_into:
        out = Path(args.merge_into).expanduser().resolve()
        if args.quick or not (out / "benchmarks.json").exists():
            print(f"benchmarks: --merge-into needs a full run's {out / 'benchmarks.json'} and a "
                  "run that is not --quick", file=sys.stderr)
            return 2
    elif args.out:
        out = Path(args.out).expanduser().resolve()
        if not full and out == environment.DOCS_DIR.resolve():
            print("benchmarks: a quick or partial run never writes over docs/benchmarks.*; "
                  "give another --out", file=sys.stderr)
            return 2
    else:
        out = environment.DOCS_DIR if full else Path(tempfile.mkdtemp(prefix="airbnb-dl-bench-out-"))
    try:
        data_dir = environment.resolve_data_dir(args.data_dir)
    except environment.DataDirError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
    settings = Settings(quick=args.quick, repeats=args.repeats, photos=args.photos,
                        replication=args.replication, memory_repeats=args.memory_repeats,
                        e2e_smoke=args.e2e_smoke, max_rows=args.max_rows)
    workdir = Path(tempfile.mkdtemp(prefix="airbnb-dl-bench-"))
    print(f"[bench] {'quick' if args.quick else 'full' if full else 'partial'} run: "
          f"{', '.join(selected)}; data {data_dir}; work folder {workdir}; output {out}", flush=True)
    try:
        report = run_benchmarks(data_dir, settings, selected,
                                workdir, log=lambda msg: print(msg, flush=True))
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    minutes = report["seconds"] / 60
    if args.merge_into:
        try:
            report = merge_reports(json.loads((out / "benchmarks.json").read_text()), report)
        except ValueError as exc:
            print(f"benchmarks: {exc}", file=sys.stderr)
            return 2
    md, js = write_report(report, out)
    print(f"[bench] done in {minutes:.1f} min:\n  {md}\n  {js}")
    for text in report["findings"]:
        print(f"[bench] finding: {text}")
    return 0
