"""What every benchmark figure uses: run settings, goals and figure records, timing, the machine's
description, the child-process runner, and datasets made for a run."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable

import numpy as np

from benchmarks.launcher import PEAK_PREFIX
from shared import environment
from shared.data import schema
from shared.io import write_text_atomic

#: Prefix of the line in which a benchmark child prints its JSON result.
RESULT_PREFIX = "BENCH-RESULT "

#: id -> (comparison, target). Ratios are defined per figure (see ``ratio_definition``).
GOALS = {
    "decode": (">=", 1.6),
    "backbone": (">=", 0.8),
    "feature_cache": (">=", 5.0),
    "memory_transfer_finetuned": ("<=", 1.25),
    "memory_late_fusion": ("<=", 1.25),
    "serve": ("<=", 1.0),
}


# =========================================================================== settings

#: Rows of the dataset (the first ones of listings.csv) that the memory and e2e figures train on,
#: whatever the dataset's size. 814 is the size of the small real sample: its full run took
#: ~16 min for the memory figures (1x and an 8x copy of 6,512 rows, two rounds) and ~9 min for the
#: two deliverable runs on 2 cores, so a full benchmark on the 10,351-listing set stays within an
#: hour while the speed figures still use every row.
DEFAULT_MAX_ROWS = 814


class Settings:
    """Sizes of one run. ``quick``: tiny sizes and one repetition (CI proves the harness works).

    ``repeats``, ``photos``, ``replication``, ``memory_repeats`` and ``max_rows`` override the
    defaults of the mode (``None``: default); ``e2e_smoke`` runs the deliverables with ``--smoke``
    (development only). Every other size follows from ``quick``. :meth:`to_json` lists them all.

    ``rows`` (quick only) cuts the dataset for every figure; ``max_rows`` caps only the figures
    that train (memory, e2e): the throughput figures (decode, backbone, feature cache) use every
    row of the dataset in a full run.
    """

    def __init__(self, quick: bool = False, repeats: int | None = None, photos: int | None = None,
                 replication: int | None = None, memory_repeats: int | None = None,
                 e2e_smoke: bool = False, max_rows: int | None = None):
        self.quick = quick
        self.repeats = repeats or (1 if quick else 3)
        self.memory_repeats = memory_repeats or (1 if quick else 2)
        self.photos = photos or (32 if quick else None)  # decode: None = every usable photo
        self.backbone_photos = min(photos or 10**9, 32 if quick else 256)
        self.image_size = 96 if quick else 224  # decode and backbone figures, pixels
        self.replication = replication or (2 if quick else 8)
        self.rows = 100 if quick else None  # None: every listing of the dataset
        # memory and e2e: the first max_rows rows (the 1x side; replication x max_rows the large one)
        self.max_rows = max_rows or (self.rows or DEFAULT_MAX_ROWS)
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")
        self.finetune_epochs = 1
        self.head_epochs = 2 if quick else 20
        self.batch_size = 32
        self.smoke = quick  # model settings of exp.smoke (image size 96 instead of 224, ...)
        self.e2e_smoke = e2e_smoke

    def to_json(self) -> dict:
        return dict(vars(self))


# =========================================================================== figures

def median_of(values) -> float | None:
    """Median of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def ratio_of(numerator, denominator) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator in (None, 0):
        return None
    return float(numerator) / float(denominator)


def goal_met(figure_id: str, ratio: float | None) -> bool | None:
    """Whether ``ratio`` reaches the goal of ``figure_id`` (None: no goal or no ratio)."""
    if figure_id not in GOALS or ratio is None:
        return None
    op, target = GOALS[figure_id]
    return ratio >= target if op == ">=" else ratio <= target


def figure(figure_id: str, title: str, measured: dict | None, reference: dict | None,
           ratio: float | None, definition: str, details: dict | None = None,
           notes: list[str] | None = None, data: str | None = None) -> dict:
    """One figure of benchmarks.json: measured and reference sides (``label``, ``value``,
    ``unit``, ``runs``...), their ratio, its goal (from :data:`GOALS`) and whether it is met.
    ``data``: which rows of the dataset the figure used (one phrase, shown in the Markdown)."""
    return {"id": figure_id, "title": title, "measured": measured, "reference": reference,
            "ratio": ratio, "ratio_definition": definition, "data": data,
            "goal": ({"op": GOALS[figure_id][0], "value": GOALS[figure_id][1]}
                     if figure_id in GOALS else None),
            "met": goal_met(figure_id, ratio), "skipped": None,
            "details": details or {}, "notes": notes or []}


def skipped(figure_id: str, title: str, reason: str) -> dict:
    """A figure that could not be measured, with the reason."""
    record = figure(figure_id, title, None, None, None, "")
    record["skipped"] = reason
    return record


def fmt(value, unit: str = "", digits: int | None = None) -> str:
    """``value`` with thousands separators and ``digits`` decimals (default: 0, 1 or 2 by size)."""
    if value is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip()


def goal_text(fig: dict) -> str:
    goal = fig.get("goal")
    return f"{goal['op']} {goal['value']}x" if goal else "none (reported)"


def met_text(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


# =========================================================================== timing

def interleaved_runs(cases: dict[str, Callable[[], int]], repeats: int, warmup: int = 1) -> dict:
    """Time every case ``repeats`` times after ``warmup`` untimed rounds, alternating the order.

    Each case returns the number of items it processed. Returns, per case,
    ``{"wall_s": [...], "cpu_s": [...], "items": n}`` (CPU: this process, all threads).
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    out = {name: {"wall_s": [], "cpu_s": [], "items": 0} for name in cases}
    names = list(cases)
    for round_ in range(repeats):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            cpu, wall = time.process_time(), time.perf_counter()
            items = cases[name]()
            out[name]["wall_s"].append(time.perf_counter() - wall)
            out[name]["cpu_s"].append(time.process_time() - cpu)
            out[name]["items"] = int(items)
    return out


def rate_summary(run: dict, unit: str, label: str) -> dict:
    """Median throughput (items/s), its runs, the best run and the CPU milliseconds per item."""
    n = run["items"]
    rates = [n / s for s in run["wall_s"]]
    cpu_ms = [1000 * c / n for c in run["cpu_s"]] if n else []
    return {"label": label, "value": median_of(rates), "unit": unit,
            "runs": [round(r, 2) for r in rates], "best": max(rates) if rates else None,
            "items": n, "cpu_ms_per_item": median_of(cpu_ms)}


def parallel_capacity(repeats: int = 3, megabytes: int = 64) -> dict:
    """How much parallel CPU this process can get right now: the speed-up of one thread per
    usable core over one thread, on a CPU-bound task that releases the GIL (sha256 of a buffer).

    About the core count on an idle machine; lower when other processes load the cores.
    """
    cores = machine_cores()
    buffer = os.urandom(megabytes << 20)

    def work() -> None:
        hashlib.sha256(buffer).digest()

    speedups = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(cores):
            work()
        serial = time.perf_counter() - start
        threads = [threading.Thread(target=work) for _ in range(cores)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        speedups.append(serial / (time.perf_counter() - start))
    return {"threads": cores, "speedup": round(median_of(speedups), 2),
            "runs": [round(x, 2) for x in speedups]}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages ([] where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# =========================================================================== machine

def machine_cores() -> int:
    """Cores this process may run on (its CPU affinity), else every logical core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_info() -> dict:
    """CPU model, cores (total and usable), RAM, versions and the environment knobs that matter."""
    import cpuinfo
    import psutil

    cpu = cpuinfo.get_cpu_info()
    logical, physical = psutil.cpu_count(), psutil.cpu_count(logical=False)
    memory = psutil.virtual_memory()
    versions = {"python": platform.python_version()}
    for module in ("tensorflow", "keras", "numpy", "PIL"):
        with contextlib.suppress(ImportError):
            versions[module] = importlib.import_module(module).__version__
    return {
        "cpu_model": cpu.get("brand_raw") or platform.processor() or platform.machine(),
        "cpu_family_model": (f"family {cpu['family']}, model {cpu['model']}"
                             if "family" in cpu and "model" in cpu else None),
        "threads_per_core": logical // physical if logical and physical else None,
        "cpu_count": os.cpu_count(),
        "usable_cores": machine_cores(),
        "cgroup_cpu_max": _cgroup_cpu_max(),
        "ram_gib": round(memory.total / 2**30, 1),
        "ram_available_gib_at_start": round(memory.available / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "TF_NUM_INTRAOP_THREADS",
                                                "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                                                "TF_ENABLE_ONEDNN_OPTS") if os.environ.get(k)},
    }


def _cgroup_cpu_max() -> str | None:
    """The container's CPU quota as the cgroup v2 file states it (``max 100000``: none)."""
    try:
        return Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    except OSError:
        return None


# =========================================================================== child processes

def run_child(args: list[str], log: Path, env: dict[str, str] | None = None) -> dict:
    """Run ``python ARGS`` in a fresh process from the project root, its output going to ``log``
    (``env``: variables set for the child on top of this process's environment).

    The one runner of the benchmarks (memory children, deliverable reports). The command runs
    under :mod:`benchmarks.launcher`, so its peak RSS excludes this process's memory. Returns
    ``{"wall_s": seconds, "peak_rss_mib": MiB, "result": dict or None}`` where ``result`` is the
    JSON of the last line starting with :data:`RESULT_PREFIX` (a benchmark child's answer).
    Raises RuntimeError with the last lines of the output when the command fails.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.launcher", sys.executable, *args],
                              stdout=handle, stderr=subprocess.STDOUT, cwd=environment.PROJECT_ROOT,
                              env={**os.environ, **env} if env else None)
    wall = time.perf_counter() - start
    output = log.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-20:])
        raise RuntimeError(f"python {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    peak = _last_json_line(output, PEAK_PREFIX) or {}
    return {"wall_s": wall, "peak_rss_mib": peak.get("peak_rss_mib"),
            "result": _last_json_line(output, RESULT_PREFIX)}


def _last_json_line(output: str, prefix: str) -> dict | None:
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    return json.loads(lines[-1][len(prefix):]) if lines else None


def print_result(result: dict) -> None:
    """A benchmark child's answer to :func:`run_child` (one line on stdout)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# =========================================================================== datasets

def _link(source: Path, target: Path) -> str:
    """Hard-link ``source`` to ``target`` (symlink across file systems); returns which."""
    try:
        os.link(source, target)
        return "hardlink"
    except OSError:
        os.symlink(source.resolve(), target)
        return "symlink"


def replicate_dataset(source, dest, factor: int, rows: int | None = None) -> dict:
    """Write a dataset directory ``dest`` holding ``factor`` copies of ``source``'s listings.

    Copy ``k`` (0-based) of the listing with ID ``i`` gets ID ``i + k * 10**digits(max ID)``, so
    copy 0 keeps the original IDs and every ID is a new unique integer. Photos are hard-linked (or
    symlinked) as ``images/<new ID>.jpg``: nothing is copied and ``source`` is only read.
    ``rows`` keeps only the first ``rows`` rows of ``listings.csv`` (before replication).

    Returns {"data_dir", "rows", "factor", "links", "source_rows"} (``source_rows``: rows of
    ``source``'s listings.csv before the cut).
    """
    import pandas as pd

    from shared.data.dataset import parse_listing_id, read_listings_csv

    source, dest = Path(source), Path(dest)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    frame = read_listings_csv(source)
    source_rows = int(len(frame))
    if rows is not None:
        frame = frame.head(rows)
    ids = frame[schema.ID_COLUMN].map(parse_listing_id)
    if ids.isna().any():
        bad = [int(i) + 2 for i in np.flatnonzero(ids.isna().to_numpy())][:5]
        raise ValueError(f"{source / schema.LISTINGS_FILE}: rows {bad} have no valid ID")
    ids = ids.astype(np.int64).to_numpy()
    stride = 10 ** len(str(int(ids.max())))
    images_in, images_out = source / schema.IMAGES_DIR, dest / schema.IMAGES_DIR
    images_out.mkdir(parents=True, exist_ok=True)
    copies, links = [], {}
    for k in range(factor):
        new_ids = ids + k * stride
        copy = frame.copy()
        copy[schema.ID_COLUMN] = [str(i) for i in new_ids]
        copies.append(copy)
        for old, new in zip(ids, new_ids, strict=True):
            photo = images_in / f"{old}.jpg"
            if photo.is_file():
                kind = _link(photo, images_out / f"{new}.jpg")
                links[kind] = links.get(kind, 0) + 1
    table = pd.concat(copies, ignore_index=True)
    csv_text = table.to_csv(sep=schema.CSV_SEPARATOR, index=False)
    write_text_atomic(dest / schema.LISTINGS_FILE, csv_text)
    return {"data_dir": str(dest), "rows": int(len(table)), "factor": factor, "links": links,
            "source_rows": source_rows}


def bounded_dataset(source, workdir, max_rows: int, factor: int = 1) -> dict:
    """The dataset a training figure (memory, e2e) runs on: the first ``max_rows`` rows of
    ``source``'s listings.csv, ``factor`` times (:func:`replicate_dataset`), written once into
    ``workdir/bounded-<max_rows>-<factor>x`` and reused by later calls of the run. A smaller
    ``source`` is used whole. Returns :func:`replicate_dataset`'s dict."""
    dest = Path(workdir) / f"bounded-{max_rows}-{factor}x"
    done = dest.with_name(dest.name + ".json")
    if done.is_file():
        return json.loads(done.read_text())
    info = replicate_dataset(source, dest, factor, max_rows)
    write_text_atomic(done, json.dumps(info))
    return info


def usable_photo_paths(data_dir: Path, limit: int | None) -> list[str]:
    """Photo paths of the dataset's usable listings, the first ``limit`` (None: all)."""
    from shared.data.dataset import load_dataset

    paths = [str(p) for p in load_dataset(data_dir).image_paths]
    return paths[:limit] if limit else paths
