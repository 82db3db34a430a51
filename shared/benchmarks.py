"""Benchmarks: speed and memory of the project's real code paths, each beside its reference.

    python -m shared.benchmarks                 # full run -> docs/benchmarks.md + .json
    python -m shared.benchmarks --quick         # tiny sizes, 1 repetition, to a temporary folder
    python -m shared.benchmarks --skip-e2e      # everything but the deliverable runs (temp folder)
    python -m shared.benchmarks --from-json F   # re-render the Markdown of a saved run
    nox -s bench [-- --quick]

Every figure is measured in one run, next to its reference, and reported as a ratio. Speed
figures are the median of ``--repeats`` repetitions after one warm-up; the measured code and its
reference alternate (A B B A ...) so that load from other processes hits both alike. Nothing
fails on a time: the goals are reported as reached or not, never asserted. Each figure also
records the load average and the machine's *parallel capacity* (speed-up of one thread per core
over one thread on a GIL-free task) just before it, plus CPU time per item, from which the
CPU-bound ceiling of a ratio follows independently of other users' load. When a goal is missed,
the diagnosis measured in the same run is turned into a finding (``findings``).

1. ``decode``: :func:`shared.images.make_image_dataset` (tf.data, parallel) vs a single-threaded
   Pillow loop doing the same work (decode, RGB, antialiased bilinear resize, float32 batches).
2. ``backbone``: :func:`shared.feature_cache.extract_features` on an empty cache (files on disk
   -> features) vs the same backbone object on a batch already in memory (compute-only bound).
3. ``feature_cache``: :func:`deliverable1.transfer.train_transfer_frozen`, first run (empty
   feature cache) vs second run (all features cached).
4. ``memory_<model>``: peak RSS of training a model (each in a fresh subprocess) on the dataset vs
   on a ``--replication``-times larger copy (rows replicated under new IDs, photos hard-linked or
   symlinked in a temporary folder); plus the original's approach (every photo in one float64
   array) at both sizes.
5. ``e2e_<deliverable>``: wall time of ``airbnb-dl report <deliverable>`` (the command behind
   ``nox -s <deliverable>``) into temporary folders, and training throughput per model.

The benchmark uses its own feature cache (``AIRBNB_DL_CACHE`` pointed at a temporary folder;
only the converted backbone weights are copied in), so "first run" really computes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from shared import config, schema
from shared.io import write_json_atomic, write_text_atomic

SCHEMA_VERSION = 1
RESULT_PREFIX = "BENCH-RESULT "
BENCHMARKS = ("decode", "backbone", "feature_cache", "memory", "e2e")
REPORTS = ("deliverable1", "deliverable2")

#: id -> (comparison, target). Ratios are defined per figure (see ``ratio_definition``).
GOALS = {
    "decode": (">=", 1.6),
    "backbone": (">=", 0.8),
    "feature_cache": (">=", 5.0),
    "memory_transfer_finetuned": ("<=", 1.25),
    "memory_late_fusion": ("<=", 1.25),
}


# =========================================================================== settings

class Settings:
    """Sizes of one run. ``quick``: tiny sizes and one repetition (CI proves the harness works)."""

    def __init__(self, quick: bool = False, repeats: int | None = None, photos: int | None = None,
                 image_size: int | None = None, replication: int | None = None,
                 memory_repeats: int | None = None, rows: int | None = None,
                 finetune_epochs: int = 1, head_epochs: int | None = None, batch_size: int = 32):
        self.quick = quick
        self.repeats = repeats or (1 if quick else 3)
        self.memory_repeats = memory_repeats or (1 if quick else 2)
        self.photos = photos or (32 if quick else None)  # decode: None = every usable photo
        self.backbone_photos = min(x for x in (photos or 10**9, 32 if quick else 256))
        self.image_size = image_size or (96 if quick else 224)
        self.replication = replication or (2 if quick else 8)
        self.rows = rows or (100 if quick else None)  # None: every listing of the dataset
        self.finetune_epochs = finetune_epochs
        self.head_epochs = head_epochs or (2 if quick else 20)
        self.batch_size = batch_size
        self.smoke = quick  # model settings of exp.smoke (image size 96 instead of 224, ...)
        self.e2e_smoke = False  # development only: the deliverable runs with --smoke

    def to_json(self) -> dict:
        return dict(vars(self))


# =========================================================================== measurements

def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def _ratio(numerator, denominator) -> float | None:
    if numerator is None or denominator in (None, 0):
        return None
    return float(numerator) / float(denominator)


def goal_met(figure_id: str, ratio: float | None) -> bool | None:
    """Whether ``ratio`` reaches the goal of ``figure_id`` (None: no goal or no ratio)."""
    if figure_id not in GOALS or ratio is None:
        return None
    op, target = GOALS[figure_id]
    return ratio >= target if op == ">=" else ratio <= target


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


def _rate_summary(run: dict, unit: str, label: str) -> dict:
    """Median throughput (items/s), its runs, the best run and the CPU milliseconds per item."""
    n = run["items"]
    rates = [n / s for s in run["wall_s"]]
    cpu_ms = [1000 * c / n for c in run["cpu_s"]] if n else []
    return {"label": label, "value": _median(rates), "unit": unit,
            "runs": [round(r, 2) for r in rates], "best": max(rates) if rates else None,
            "items": n, "cpu_ms_per_item": _median(cpu_ms)}


def parallel_capacity(repeats: int = 3, megabytes: int = 64) -> dict:
    """How much parallel CPU this process can get right now: the speed-up of one thread per
    usable core over one thread, on a CPU-bound task that releases the GIL (sha256 of a buffer).

    About the core count on an idle machine; lower when other processes load the cores.
    """
    import hashlib
    import threading

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
    return {"threads": cores, "speedup": round(_median(speedups), 2),
            "runs": [round(x, 2) for x in speedups]}


def _vm(field: str) -> float | None:
    """/proc/self/status ``field`` (VmRSS, VmHWM...) in MiB; None where /proc is absent."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, flags=re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs``); False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict:
    """CPU model, cores (total and usable), RAM, versions and the environment knobs that matter."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    meminfo = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                meminfo[key] = int(value.split()[0]) / 1024 / 1024
    quota = None
    with contextlib.suppress(OSError):
        quota = Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    versions = {"python": platform.python_version()}
    for module in ("tensorflow", "keras", "numpy", "PIL"):
        with contextlib.suppress(ImportError):
            versions[module] = importlib.import_module(module).__version__
    usable = machine_cores()
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("cpu family", "model", "siblings", "cpu cores") and key not in fields:
                fields[key] = value
    threads_per_core = None
    with contextlib.suppress(KeyError, ValueError, ZeroDivisionError):
        threads_per_core = int(fields["siblings"]) // int(fields["cpu cores"])
    return {
        "cpu_model": cpu,
        "cpu_family_model": (f"family {fields['cpu family']}, model {fields['model']}"
                             if "cpu family" in fields and "model" in fields else None),
        "threads_per_core": threads_per_core,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "cgroup_cpu_max": quota,
        "ram_gib": round(meminfo.get("MemTotal", 0), 1) or None,
        "ram_available_gib_at_start": round(meminfo.get("MemAvailable", 0), 1) or None,
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "TF_NUM_INTRAOP_THREADS",
                                                "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                                                "TF_ENABLE_ONEDNN_OPTS") if os.environ.get(k)},
    }


def _mem_available_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


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

    Returns {"data_dir", "rows", "factor", "links"}.
    """
    from shared.dataset import parse_listing_id, read_listings_csv
    import pandas as pd

    source, dest = Path(source), Path(dest)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    frame = read_listings_csv(source)
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
        for old, new in zip(ids, new_ids):
            photo = images_in / f"{old}.jpg"
            if photo.is_file():
                kind = _link(photo, images_out / f"{new}.jpg")
                links[kind] = links.get(kind, 0) + 1
    table = pd.concat(copies, ignore_index=True)
    csv_text = table.to_csv(sep=schema.CSV_SEPARATOR, index=False)
    write_text_atomic(dest / schema.LISTINGS_FILE, csv_text)
    return {"data_dir": str(dest), "rows": int(len(table)), "factor": factor, "links": links}


def pillow_photo(path, image_size: int) -> np.ndarray:
    """Reference decoder: Pillow, RGB, antialiased bilinear resize -> (s, s, 3) float32 [0, 255].

    Pillow's bilinear filter widens its support when downscaling, i.e. it is antialiased like
    ``tf.image.resize(..., antialias=True)`` in :func:`shared.images.decode_photo`.
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32)


# =========================================================================== 1. decode

def bench_decode(paths: list[str], settings: Settings) -> dict:
    """tf.data pipeline vs single-threaded Pillow on the same files, images per second."""
    import tensorflow as tf

    from shared.images import decode_photo, make_image_dataset

    size, batch = settings.image_size, settings.batch_size

    def pipeline() -> int:
        n = 0
        for images in make_image_dataset(paths, image_size=size, batch_size=batch):
            n += int(images.shape[0])
        return n

    def pillow() -> int:
        n, pending = 0, []
        for path in paths:
            pending.append(pillow_photo(path, size))
            if len(pending) == batch:
                n += len(np.stack(pending))
                pending = []
        return n + (len(np.stack(pending)) if pending else 0)

    runs = interleaved_runs({"pipeline": pipeline, "pillow": pillow}, settings.repeats)
    measured = _rate_summary(runs["pipeline"], "images/s", "tf.data pipeline (make_image_dataset)")
    reference = _rate_summary(runs["pillow"], "images/s", "single-threaded Pillow loop")

    # Diagnosis: CPU cost per photo of each stage, one thread (not a throughput figure).
    def tf_stage(fn) -> Callable[[], int]:
        data = tf.data.Dataset.from_tensor_slices(np.asarray(paths)).map(fn).prefetch(8)
        return lambda: sum(1 for _ in data)  # built (and traced) once, iterated per run

    def decode_only(path):
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

    def bilinear_resize(path):  # the decoder before DECODE_VERSION 2, for comparison only
        image = tf.image.resize(decode_only(path), (size, size), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)

    def pillow_decode_only() -> int:
        from PIL import Image

        for path in paths:
            with Image.open(path) as image:
                image.convert("RGB").load()
        return len(paths)

    stages = interleaved_runs({
        "tf: read + decode_image": tf_stage(decode_only),
        "tf: decode_photo (decode + area resize + round/cast)":
            tf_stage(lambda p: decode_photo(p, size)),
        "tf: decode + antialiased bilinear resize (previous decoder)": tf_stage(bilinear_resize),
        "pillow: decode": pillow_decode_only,
        "pillow: decode + bilinear resize + float32": lambda: sum(
            1 for p in paths if pillow_photo(p, size) is not None),
    }, repeats=max(1, min(settings.repeats, 2)), warmup=1)
    breakdown = {name: _median([1000 * c / run["items"] for c in run["cpu_s"]])
                 for name, run in stages.items()}
    cores = machine_cores()
    ratio = _ratio(measured["value"], reference["value"])
    best_ratio = _ratio(measured["best"], reference["best"])
    ceiling = None
    if measured["cpu_ms_per_item"] and reference["cpu_ms_per_item"]:
        ceiling = cores * reference["cpu_ms_per_item"] / measured["cpu_ms_per_item"]
    return _figure(
        "decode", "Photo decoding and resizing", measured, reference, ratio,
        "pipeline images/s / Pillow images/s",
        details={"photos": len(paths), "image_size": size, "batch_size": batch,
                 "cpu_ms_per_photo_single_thread": breakdown,
                 "cpu_bound_ceiling": ceiling,
                 "usable_cores": cores, "ratio_of_best_runs": best_ratio},
        notes=[f"{len(paths)} photos at {size} px, float32 batches of {batch} from both. The "
               "CPU-bound ceiling of the ratio is cores x (Pillow CPU ms/photo) / (pipeline CPU "
               "ms/photo): a parallel pipeline cannot beat it however well it overlaps."])


def machine_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# =========================================================================== 2. backbone

def bench_backbone(paths: list[str], settings: Settings, workdir: Path) -> dict:
    """extract_features on an empty cache (disk -> features) vs the model on in-memory batches."""
    import tensorflow as tf

    from shared.backbones import DEFAULT_BACKBONE, build_backbone
    from shared.feature_cache import extract_features
    from shared.images import make_image_dataset

    size, batch = settings.image_size, settings.batch_size
    model = build_backbone(DEFAULT_BACKBONE, image_size=size)
    first = next(iter(make_image_dataset(paths[:batch], image_size=size, batch_size=batch)))
    in_memory = tf.constant(first)  # real photos, already decoded: (batch, size, size, 3) float32
    n = len(paths)
    counter = iter(range(10**9))

    def end_to_end() -> int:
        root = workdir / f"backbone-cache-{next(counter)}"  # empty: every photo is computed
        features, stats = extract_features(paths, DEFAULT_BACKBONE, size, batch_size=batch,
                                           cache_root=root, progress=False, model=model)
        shutil.rmtree(root, ignore_errors=True)
        if stats["computed"] != len(paths):
            raise RuntimeError(f"expected {len(paths)} computed features, got {stats}")
        return len(features)

    def compute_only() -> int:
        done = 0
        while done < n:
            take = min(batch, n - done)
            x = in_memory if take == len(in_memory) else in_memory[:take]
            model(x, training=False).numpy()
            done += take
        return done

    runs = interleaved_runs({"e2e": end_to_end, "compute": compute_only}, settings.repeats)
    measured = _rate_summary(runs["e2e"], "photos/s", "extract_features, empty cache (disk -> features)")
    reference = _rate_summary(runs["compute"], "photos/s", "same model on in-memory batches (compute only)")
    ratio = _ratio(measured["value"], reference["value"])
    cpu_bound = _ratio(reference["cpu_ms_per_item"], measured["cpu_ms_per_item"])
    return _figure(
        "backbone", f"Backbone feature extraction ({DEFAULT_BACKBONE}, {size} px)", measured,
        reference, ratio, "end-to-end photos/s / compute-only photos/s",
        details={"photos": n, "backbone": DEFAULT_BACKBONE, "image_size": size, "batch_size": batch,
                 "cpu_bound_ceiling": cpu_bound,
                 "ratio_of_best_runs": _ratio(measured["best"], reference["best"])},
        notes=["End to end is the real path: sha256 of every file, tf.data decode + resize, the "
               "model, one .npy per photo written atomically. The CPU-bound ceiling is (compute "
               "CPU ms/photo) / (end-to-end CPU ms/photo): on a saturated CPU, decoding and "
               "writing compete with the model for the same cores, so overlap cannot hide them."])


# =========================================================================== 3. feature cache

def bench_feature_cache(data_dir: Path, settings: Settings, workdir: Path,
                        warm: bool = False) -> dict:
    """train_transfer_frozen with an empty feature cache, then again with every feature cached.

    ``warm``: the process already ran the backbone (earlier figures), so the untimed warm-up
    pair is skipped (it costs minutes at full size).
    """
    from deliverable1.transfer import default_image_size, train_transfer_frozen
    from shared.backbones import DEFAULT_BACKBONE
    from shared.experiment import prepare
    from shared.feature_cache import feature_cache_dir

    exp = prepare(data_dir, workdir / "feature-cache-models", smoke=settings.smoke)
    size = default_image_size(exp)  # train_transfer_frozen's default
    folder = feature_cache_dir(DEFAULT_BACKBONE, size)

    def run() -> tuple[float, dict]:
        start = time.perf_counter()
        _, stats = train_transfer_frozen(exp)
        return time.perf_counter() - start, stats

    pairs = []
    warmup = 0 if (settings.quick or warm) else 1
    for index in range(warmup + settings.repeats):
        shutil.rmtree(folder, ignore_errors=True)
        first, first_stats = run()
        second, second_stats = run()
        if index >= warmup:
            pairs.append({"first_s": first, "second_s": second,
                          "first_extraction_s": first_stats["seconds"],
                          "second_extraction_s": second_stats["seconds"],
                          "first_computed": first_stats["computed"],
                          "second_cached": second_stats["cached"]})
    first_med = _median(p["first_s"] for p in pairs)
    second_med = _median(p["second_s"] for p in pairs)
    measured = {"label": "second run (every feature cached)", "value": second_med, "unit": "s",
                "runs": [round(p["second_s"], 2) for p in pairs]}
    reference = {"label": "first run (empty feature cache)", "value": first_med, "unit": "s",
                 "runs": [round(p["first_s"], 2) for p in pairs]}
    extraction_first = _median(p["first_extraction_s"] for p in pairs)
    extraction_second = _median(p["second_extraction_s"] for p in pairs)
    rest_second = _median(p["second_s"] - p["second_extraction_s"] for p in pairs)
    return _figure(
        "feature_cache", "Feature cache: transfer_frozen, second run vs first run", measured,
        reference, _ratio(first_med, second_med), "first-run seconds / second-run seconds",
        details={"listings": int(len(exp.dataset.frame)), "image_size": size,
                 "features_computed_first_run": pairs[-1]["first_computed"],
                 "features_cached_second_run": pairs[-1]["second_cached"],
                 "extraction_first_s": extraction_first,
                 "extraction_second_s": extraction_second,
                 "extraction_speedup": _ratio(extraction_first, extraction_second),
                 "head_search_and_evaluation_s": rest_second,
                 "warmup_pairs": warmup, "smoke_settings": exp.smoke, "pairs": pairs},
        notes=["Whole train_transfer_frozen call (features, head search on validation, "
               "evaluation, saving) with the project's default settings; extraction_* isolate "
               "extract_features. The cache folder is deleted before each first run."
               + ("" if warmup else " No separate warm-up pair: the process is already warm "
                  "from the previous figures (TensorFlow, backbone, photos in the page cache).")])


# =========================================================================== 4. memory

def run_child(args: list[str]) -> dict:
    """Run ``python -m shared.benchmarks --child ...`` and return its JSON result.

    Adds ``wall_s``. Peak memory comes from the child's own ``VmHWM``: the kernel's
    ``ru_maxrss`` of a child (``wait4``, ``RUSAGE_CHILDREN``) is useless here, as it includes the
    RSS the forked child inherited from this (large) process before ``exec``.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "shared.benchmarks", "--child", *args],
                              stdout=out, stderr=err, cwd=config.PROJECT_ROOT)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark child {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["wall_s"] = round(wall, 1)
    return result


def _original_bytes(n: int, size: int) -> int:
    return n * size * size * 3 * 8


def bench_memory(data_dir: Path, settings: Settings, workdir: Path,
                 warm: bool = False) -> list[dict]:
    """Peak RSS of training on the dataset vs on a replicated one; the original's float64 load.

    ``warm``: the feature cache already holds the dataset's features (the feature-cache figure
    ran), so no warm-up child is needed.
    """
    from shared.dataset import load_dataset

    factor = settings.replication
    if settings.rows:
        base = Path(replicate_dataset(data_dir, workdir / "data-1x", 1, settings.rows)["data_dir"])
    else:
        base = data_dir
    big_info = replicate_dataset(data_dir, workdir / f"data-{factor}x", factor, settings.rows)
    big = Path(big_info["data_dir"])
    sizes = {"1x": base, f"{factor}x": big}
    listings = {key: int(len(load_dataset(path, check_photos=False).frame))
                for key, path in sizes.items()}
    counter = iter(range(10**6))
    figures = []

    def child(model: str, key: str) -> dict:
        args = ["train", "--model", model, "--data-dir", str(sizes[key]),
                "--models-dir", str(workdir / f"memory-models-{next(counter)}"),
                "--finetune-epochs", str(settings.finetune_epochs),
                "--head-epochs", str(settings.head_epochs)]
        return run_child(args + (["--smoke"] if settings.smoke else []))

    entries = {"transfer_finetuned": "deliverable1.transfer.train_transfer_finetuned",
               "late_fusion": "deliverable2.late_fusion.train_late_fusion"}
    models = list(entries)
    keys = list(sizes)
    jobs = []  # (model, size key), alternating the size order between rounds
    for round_ in range(settings.memory_repeats):
        for model in models:
            jobs += [(model, key) for key in (keys if round_ % 2 == 0 else keys[::-1])]
    if settings.quick:
        # quick: two children at a time (peak RSS is per process, so they do not interfere)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda job: child(*job), jobs))
    else:
        if not warm:
            child(models[0], "1x")  # warm-up: fills the feature cache, warms the page cache
        results = [child(*job) for job in jobs]

    for name, entry in entries.items():
        figure_id = f"memory_{name}"
        title = f"Memory: peak RSS training {name}, {factor}x dataset vs 1x"
        runs = {key: [r for job, r in zip(jobs, results) if job == (name, key)] for key in keys}
        summary = {key: _memory_summary(values) for key, values in runs.items()}
        measured = {"label": f"{factor}x dataset ({listings[keys[1]]} listings)",
                    "value": summary[keys[1]]["peak_process_mib"], "unit": "MiB",
                    "runs": [r["peak_process_mib"] for r in runs[keys[1]]]}
        reference = {"label": f"1x dataset ({listings['1x']} listings)",
                     "value": summary["1x"]["peak_process_mib"], "unit": "MiB",
                     "runs": [r["peak_process_mib"] for r in runs["1x"]]}
        figures.append(_figure(
            figure_id, title, measured, reference,
            _ratio(measured["value"], reference["value"]), f"peak RSS {factor}x / peak RSS 1x",
            details={"per_size": summary, "entry_point": entry, "listings": listings,
                     "training_phase_ratio": _ratio(summary[keys[1]]["peak_training_phase_mib"],
                                                    summary["1x"]["peak_training_phase_mib"]),
                     "runs": runs},
            notes=[_memory_note(name, settings)]))

    # the original's approach: every photo resized and held in one float64 array
    size = 224
    runs = {key: [] for key in sizes}
    notes = []
    for key, path in sizes.items():
        need = _original_bytes(listings[key], size)
        available = _mem_available_bytes()
        if available is not None and need > 0.6 * available:
            notes.append(f"{key}: skipped, the array needs {need / 2**30:.1f} GiB and only "
                         f"{available / 2**30:.1f} GiB are available (value = the array alone)")
            runs[key].append({"peak_process_mib": round(need / 2**20, 1), "projected": True})
            continue
        for _ in range(settings.memory_repeats):
            runs[key].append(run_child(["original", "--data-dir", str(path),
                                        "--image-size", str(size)]))
    values = {key: _median(r["peak_process_mib"] for r in runs[key]) for key in runs}
    figures.append(_figure(
        "memory_original_float64", f"Memory: the original's approach (all photos in one float64 "
        f"array, {size} px), {factor}x vs 1x",
        {"label": f"{factor}x dataset", "value": values[keys[1]], "unit": "MiB",
         "runs": [r["peak_process_mib"] for r in runs[keys[1]]]},
        {"label": "1x dataset", "value": values[keys[0]], "unit": "MiB",
         "runs": [r["peak_process_mib"] for r in runs[keys[0]]]},
        _ratio(values[keys[1]], values[keys[0]]), f"peak RSS {factor}x / peak RSS 1x",
        details={"array_gib": {k: round(_original_bytes(listings[k], size) / 2**30, 2) for k in keys},
                 "listings": listings, "runs": runs},
        notes=["Loading only (Pillow decode + resize into a preallocated (n, 224, 224, 3) float64 "
               "array, no TensorFlow): a lower bound of the original's training peak, which adds "
               "TensorFlow and a float32 copy for model.fit.", *notes]))
    return figures


def _memory_note(model: str, settings: Settings) -> str:
    if model == "transfer_finetuned":
        before = ("train_transfer_frozen (its features come from the cache; the linear probe "
                  "is solved in closed form)")
        measured = (f"train_transfer_finetuned, {settings.finetune_epochs} epoch(s) on augmented "
                    "photos streamed by tf.data")
    else:
        before = (f"deliverable 1's mlp (one candidate, {settings.head_epochs} epochs) as the "
                  "tabular branch and the cached backbone features")
        measured = (f"train_late_fusion: phase 1 on cached features (grid, {settings.head_epochs} "
                    f"epochs each), phase 2 end to end on photos for {settings.finetune_epochs} "
                    "epoch(s)")
    return ("Each run is a fresh process: prepare (load + validate the dataset, split, tabular "
            f"preprocessor), {before}, then the measured {measured}, on the project's code path. "
            "The replicated photos have the same bytes, so they hit the feature cache too. Peak "
            "of the process = VmHWM over the whole process; training phase = VmHWM reset (Linux "
            "clear_refs) just before the measured call.")


def _memory_summary(runs: list[dict]) -> dict:
    return {key: _median(r.get(key) for r in runs)
            for key in ("peak_process_mib", "peak_training_phase_mib", "rss_after_prepare_mib",
                        "peak_before_training_mib", "wall_s", "train_seconds")}


# --------------------------------------------------------------------------- children

def child_train(args) -> dict:
    """Fresh process: prepare + frozen head + the measured training; peak RSS per phase."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from deliverable1.transfer import train_transfer_finetuned, train_transfer_frozen
    from shared.experiment import start_run

    exp = start_run(args.data_dir, args.models_dir, smoke=args.smoke)
    after_prepare = _vm("VmRSS")
    if args.model == "transfer_finetuned":
        frozen, _ = train_transfer_frozen(exp)

        def train():
            return train_transfer_finetuned(exp, frozen, epochs=args.finetune_epochs)
    elif args.model == "late_fusion":
        from deliverable1.mlp import config_of, train_mlp
        from deliverable2 import late_fusion
        from deliverable2.train import FusionRun

        run = FusionRun(exp)
        raw = run.raw_features()  # cached backbone features, as deliverable 2 uses them
        # the tabular branch is deliverable 1's chosen mlp: one candidate, few epochs, suffices
        mlp = train_mlp(exp, n_configs=1, epochs=args.head_epochs)
        tab_config = config_of(mlp.params)

        def train():
            return late_fusion.train_late_fusion(exp, raw, run.backbone, run.image_size, tab_config,
                                                 epochs=args.head_epochs,
                                                 finetune_epochs=args.finetune_epochs,
                                                 log=lambda *a, **k: None)
    else:
        raise SystemExit(f"unknown model {args.model!r}")
    before = _vm("VmHWM")
    reset = _reset_peak_rss()
    start = time.perf_counter()
    bundle = train()
    image_size = bundle.image_size
    seconds = time.perf_counter() - start
    phase = _vm("VmHWM") if reset else None
    return {"model": args.model, "n_listings": int(len(exp.dataset.frame)),
            "n_train": int(len(exp.parts["train"].frame)), "image_size": int(image_size),
            "rss_after_prepare_mib": after_prepare, "peak_before_training_mib": before,
            "peak_training_phase_mib": phase,
            "peak_process_mib": max(v for v in (before, phase) if v is not None),
            "train_seconds": round(seconds, 1)}


def child_original(args) -> dict:
    """Fresh process: the original's approach, every photo in one (n, s, s, 3) float64 array."""
    from shared.dataset import load_dataset

    paths = load_dataset(args.data_dir, check_photos=False).image_paths
    size = args.image_size
    before = _vm("VmRSS")
    images = np.empty((len(paths), size, size, 3), dtype=np.float64)
    for i, path in enumerate(paths):
        images[i] = pillow_photo(path, size)
    return {"n_photos": int(len(paths)), "array_mib": round(images.nbytes / 2**20, 1),
            "rss_before_load_mib": before, "peak_process_mib": _vm("VmHWM")}


# =========================================================================== 5. end to end

def _run_report(deliverable: str, data_dir: Path, out: Path, models: Path,
                smoke: bool = False) -> dict:
    cmd = [sys.executable, "-m", "shared.cli", "report", deliverable, "--data-dir", str(data_dir),
           "--out", str(out), "--models-dir", str(models)] + (["--smoke"] if smoke else [])
    log = out.parent / f"{deliverable}.log"
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=config.PROJECT_ROOT)
        proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-20:])
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    return {"wall_s": wall, "command": cmd}


def training_throughput(metrics: dict) -> list[dict]:
    """Training throughput per model from a deliverable's ``metrics.json``.

    samples/s = training rows x epochs (summed over the searched candidates when they record
    ``epochs_run``) / ``train_seconds``. Models without epochs (sklearn fits, the frozen-feature
    head whose trials record none) report training rows x fits / s, labelled as such.
    """
    n_train = int(metrics.get("dataset", {}).get("split", {}).get("train", 0))
    rows = []
    for name, record in metrics.get("models", {}).items():
        params = record.get("params", {}) or {}
        seconds = float(record.get("train_seconds", 0.0))
        trials = params.get("trials") or []
        epoch_keys = [k for k in params if isinstance(params[k], int) and not isinstance(
            params[k], bool) and (k == "epochs_run" or k.endswith("_epochs_run")
                                  or k.endswith("phase1_epochs"))]
        if seconds <= 0:  # a model reused from an earlier run (deliverable 2 reloads its references)
            rows.append({"model": name, "train_seconds": 0.0, "n_train": n_train, "passes": 0,
                         "basis": "reused, not trained in this run", "samples_per_s": None})
            continue
        if epoch_keys:
            passes, basis = int(sum(params[k] for k in epoch_keys)), "epochs (" + " + ".join(epoch_keys) + ")"
        elif trials and all("epochs_run" in t for t in trials):
            passes, basis = int(sum(t["epochs_run"] for t in trials)), "epochs summed over the search"
        elif trials:
            passes, basis = len(trials), "fits (no epochs recorded)"
        else:
            passes, basis = 1, "one fit"
        rows.append({"model": name, "train_seconds": round(seconds, 2), "n_train": n_train,
                     "passes": passes, "basis": basis,
                     "samples_per_s": round(n_train * passes / seconds, 1)})
    return rows


def bench_e2e(data_dir: Path, settings: Settings, workdir: Path) -> list[dict]:
    """Wall time of each deliverable's report command, and training throughput per model."""
    models = workdir / "e2e-models"
    figures = []
    for deliverable in REPORTS:
        figure_id = f"e2e_{deliverable}"
        title = f"Wall time of nox -s {deliverable} (airbnb-dl report {deliverable})"
        out = workdir / f"e2e-{deliverable}" / "docs"
        out.parent.mkdir(parents=True, exist_ok=True)
        run = _run_report(deliverable, data_dir, out, models, smoke=settings.e2e_smoke)
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
        throughput = training_throughput(metrics)
        train_total = sum(r["train_seconds"] for r in throughput) or None
        figures.append(_figure(
            figure_id, title,
            {"label": "wall time of the report command", "value": run["wall_s"], "unit": "s",
             "runs": [round(run["wall_s"], 1)]},
            {"label": "sum of the models' train_seconds", "value": train_total, "unit": "s",
             "runs": [round(train_total, 1)] if train_total else []},
            _ratio(run["wall_s"], train_total), "wall time / summed training time",
            details={"throughput": throughput,
                     "models_dir_reused_from": "deliverable1" if deliverable != "deliverable1" else None,
                     "report_run": metrics.get("run", {}),
                     "listings": metrics.get("dataset", {}).get("rows_usable")},
            notes=["One run (a full report takes minutes; repeating it on a shared 2-core machine "
                   "would not make it more representative). Same command as the nox session, "
                   "output and models in temporary folders (docs/ and models/ untouched), "
                   "environment reused, feature cache warm (as on any rerun; the first-ever run "
                   "adds the extraction time of the feature-cache figure)."]))
    return figures


# =========================================================================== results

def _figure(figure_id, title, measured, reference, ratio, definition, details=None,
            notes=None) -> dict:
    return {"id": figure_id, "title": title, "measured": measured, "reference": reference,
            "ratio": ratio, "ratio_definition": definition,
            "goal": ({"op": GOALS[figure_id][0], "value": GOALS[figure_id][1]}
                     if figure_id in GOALS else None),
            "met": goal_met(figure_id, ratio), "skipped": None,
            "details": details or {}, "notes": notes or []}


def _skipped(figure_id, title, reason) -> dict:
    figure = _figure(figure_id, title, None, None, None, "")
    figure["skipped"] = reason
    return figure


def _fmt(value, unit: str = "", digits: int | None = None) -> str:
    if value is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip()


def render_markdown(report: dict) -> str:
    """The human-readable page (docs/benchmarks.md) of a benchmarks.json document."""
    m, lines = report["machine"], []
    lines += ["# Benchmarks", "",
              "Speed and memory of the project's real code paths, each measured in the same run "
              "as its reference and reported as a ratio. Generated by `nox -s bench` "
              "(`python -m shared.benchmarks`) into `docs/benchmarks.md` and "
              "`docs/benchmarks.json`; nothing here is typed by hand. Goals are reported, never "
              "enforced: no test or CI job fails on a time (CI runs `nox -s bench -- --quick` "
              "only to prove the harness works).", ""]
    if report["settings"].get("quick") or report.get("partial"):
        lines += ["!!! warning \"Not a full run\"",
                  f"    quick={report['settings'].get('quick')}, benchmarks run: "
                  f"{', '.join(report.get('benchmarks', []))}. These numbers are not the "
                  "committed figures.", ""]
    load = report.get("load_average", {})
    lines += ["## Machine and run", "",
              "| | |", "|---|---|",
              f"| CPU | {m['cpu_model']} |",
              f"| cores | {m['cpu_count']} logical ({m.get('threads_per_core') or '?'} thread(s) "
              f"per core as the guest sees it), {m['usable_cores']} usable by this process"
              + (f" (cgroup cpu.max `{m['cgroup_cpu_max']}`)" if m.get("cgroup_cpu_max") else "")
              + " |",
              f"| RAM | {m.get('ram_gib')} GiB ({m.get('ram_available_gib_at_start')} GiB "
              "available at start) |",
              f"| OS | {m['os']} |",
              "| versions | " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + " |",
              "| environment | " + (", ".join(f"`{k}={v}`" for k, v in m["env"].items())
                                    or "no thread or BLAS variables set") + " |",
              f"| load average (1, 5, 15 min) | start {load.get('start')}, end {load.get('end')} "
              "(other users' jobs on the same cores disturb the timings) |",
              f"| parallel capacity | {_capacity(report.get('parallel_capacity', {}))} |",
              f"| started | {report['started']} |",
              f"| duration | {_fmt((report.get('seconds') or 0) / 60, 'min', 1)} |",
              f"| settings | {_settings_line(report['settings'])} |", ""]

    lines += ["## Summary", "",
              "| figure | measured | reference | ratio | goal | reached |",
              "|---|---|---|---|---|---|"]
    for fig in report["results"]:
        if fig["skipped"]:
            lines.append(f"| {fig['title']} | skipped: {fig['skipped']} | | | "
                         f"{_goal(fig)} | n/a |")
            continue
        lines.append(
            f"| {fig['title']} | {fig['measured']['label']}: "
            f"**{_fmt(fig['measured']['value'], fig['measured']['unit'])}** | "
            f"{fig['reference']['label']}: {_fmt(fig['reference']['value'], fig['reference']['unit'])} | "
            f"**{_fmt(fig['ratio'], 'x', 2)}** ({fig['ratio_definition']}) | {_goal(fig)} | "
            f"{_met(fig['met'])} |")
    lines.append("")
    lines += ["Each speed figure is the median of the runs listed below (after one untimed "
              "warm-up); the measured code and its reference alternate so that the load of "
              "other processes falls on both.", ""]

    for fig in report["results"]:
        lines += _figure_section(fig)
    if report.get("findings"):
        lines += ["## Findings: what limits the missed goals", ""]
        lines += [f"- {text}" for text in report["findings"]] + [""]
    lines += ["## Reproduce", "",
              "```bash",
              "nox -s bench                  # full run (about half an hour on 2 cores)",
              "nox -s bench -- --quick       # tiny sizes, to a temporary folder (CI)",
              "python -m shared.benchmarks --help",
              "```", ""]
    return "\n".join(lines)


def _capacity(capacity: dict) -> str:
    if not capacity.get("start"):
        return "not measured"
    start, end = capacity["start"], capacity.get("end") or {}
    return (f"{start['threads']} threads vs 1 on a GIL-free CPU task: {start['speedup']}x at the "
            f"start, {end.get('speedup', 'n/a')}x at the end ({start['threads']}x on an idle "
            "machine; less when other processes use the cores)")


def _settings_line(settings: dict) -> str:
    keys = ("repeats", "memory_repeats", "photos", "backbone_photos", "image_size", "replication", "rows",
            "finetune_epochs", "head_epochs", "batch_size")
    return ", ".join(f"{k}={settings.get(k) if settings.get(k) is not None else 'all'}"
                     for k in keys)


def _goal(fig: dict) -> str:
    goal = fig.get("goal")
    return f"{goal['op']} {goal['value']}x" if goal else "none (reported)"


def _met(met) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


def _figure_section(fig: dict) -> list[str]:
    lines = [f"## {fig['title']}", ""]
    if fig["skipped"]:
        return lines + [f"Skipped: {fig['skipped']}.", ""]
    for side in ("measured", "reference"):
        part = fig[side]
        extra = (f"; CPU {_fmt(part['cpu_ms_per_item'], 'ms')} per item (all threads)"
                 if part.get("cpu_ms_per_item") else "")
        runs = ", ".join(_fmt(r) for r in part.get("runs", []))
        if part.get("best") is not None and len(part.get("runs", [])) > 1:
            extra = f"; best run {_fmt(part['best'], part['unit'])}" + extra
        lines.append(f"- {side}: {part['label']}: **{_fmt(part['value'], part['unit'])}** "
                     f"(runs: {runs}){extra}")
    lines.append(f"- ratio ({fig['ratio_definition']}): **{_fmt(fig['ratio'], 'x', 2)}**, goal "
                 f"{_goal(fig)}: {_met(fig['met'])}"
                 + (f"; ratio of the best runs (least disturbed by other load): "
                    f"{_fmt(fig['details']['ratio_of_best_runs'], 'x', 2)}"
                    if fig["details"].get("ratio_of_best_runs") else ""))
    lines += [f"- {note}" for note in fig["notes"]]
    if fig.get("load_average"):
        lines.append(f"- load average before / after: {fig['load_average']['before']} / "
                     f"{fig['load_average']['after']}; parallel capacity before: "
                     f"{fig.get('parallel_capacity_before', 'n/a')}x; {fig.get('seconds', 0):.0f} s")
    lines.append("")
    details = fig["details"]
    if fig["id"] == "decode":
        lines += ["CPU time per photo of each stage, one thread (diagnosis):", "",
                  "| stage | CPU ms / photo |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v, '', 2)} |"
                  for k, v in details["cpu_ms_per_photo_single_thread"].items()]
        lines += ["", f"CPU-bound ceiling of the ratio on {details['usable_cores']} cores: "
                      f"**{_fmt(details['cpu_bound_ceiling'], 'x', 2)}**.", ""]
    elif fig["id"] == "backbone":
        lines += [f"CPU-bound ceiling (compute CPU / end-to-end CPU per photo): "
                  f"**{_fmt(details['cpu_bound_ceiling'], 'x', 2)}**.", ""]
    elif fig["id"] == "feature_cache":
        lines += [f"extract_features alone: {_fmt(details['extraction_first_s'], 's')} (first, "
                  f"{details['features_computed_first_run']} photos computed) vs "
                  f"{_fmt(details['extraction_second_s'], 's')} (second, "
                  f"{details['features_cached_second_run']} read from the cache): "
                  f"**{_fmt(details['extraction_speedup'], 'x', 1)}**. The rest of the second run "
                  f"(head search, evaluation, saving): {_fmt(details['head_search_and_evaluation_s'], 's')}.",
                  ""]
    elif fig["id"].startswith("memory_") and "per_size" in details:
        lines += ["| dataset | listings | RSS after prepare | peak before training | peak during "
                  "training | peak of the process | wall |", "|---|---|---|---|---|---|---|"]
        for key, s in details["per_size"].items():
            lines.append(f"| {key} | {details['listings'][key]} | "
                         f"{_fmt(s['rss_after_prepare_mib'], 'MiB')} | "
                         f"{_fmt(s['peak_before_training_mib'], 'MiB')} | "
                         f"{_fmt(s['peak_training_phase_mib'], 'MiB')} | "
                         f"{_fmt(s['peak_process_mib'], 'MiB')} | {_fmt(s['wall_s'], 's')} |")
        lines += ["", f"Training-phase ratio: {_fmt(details['training_phase_ratio'], 'x', 2)}.", ""]
    elif fig["id"] == "memory_original_float64":
        lines += ["Array alone: " + ", ".join(f"{k} {v} GiB" for k, v in details["array_gib"].items())
                  + ".", ""]
    elif fig["id"].startswith("e2e_") and details.get("throughput"):
        lines += ["Training throughput per model (from the run's metrics.json):", "",
                  "| model | train s | training rows | passes | basis | samples/s |",
                  "|---|---|---|---|---|---|"]
        for row in details["throughput"]:
            lines.append(f"| {row['model']} | {_fmt(row['train_seconds'], '', 1)} | {row['n_train']} | "
                         f"{row['passes']} | {row['basis']} | {_fmt(row['samples_per_s'], '', 1)} |")
        lines.append("")
    return lines


def findings(results: list[dict]) -> list[str]:
    """One sentence per missed goal, computed from the run's own diagnosis figures."""
    out = []
    by_id = {fig["id"]: fig for fig in results}
    fig = by_id.get("decode")
    if fig and fig["met"] is False:
        d = fig["details"]
        stages = d["cpu_ms_per_photo_single_thread"]
        full = stages.get("tf: decode_photo (decode + area resize + round/cast)")
        decode = stages.get("tf: read + decode_image")
        out.append(
            f"decode (parallel capacity of the machine during this figure: "
            f"{fig.get('parallel_capacity_before', 'n/a')}x): the pipeline costs "
            f"{_fmt(fig['measured']['cpu_ms_per_item'], 'ms')} CPU per photo vs Pillow's "
            f"{_fmt(fig['reference']['cpu_ms_per_item'], 'ms')}, so with {d['usable_cores']} cores "
            f"fully used the ratio cannot exceed {_fmt(d['cpu_bound_ceiling'], 'x', 2)}. Of "
            f"decode_photo's {_fmt(full, 'ms')}, {_fmt(decode, 'ms')} is the JPEG decode itself "
            f"and {_fmt((full or 0) - (decode or 0), 'ms')} the area resize and cast. If the "
            "ceiling is above the goal, the shortfall is other load on the machine (see its "
            "parallel capacity).")
    fig = by_id.get("backbone")
    if fig and fig["met"] is False:
        out.append(
            f"backbone: end to end costs {_fmt(fig['measured']['cpu_ms_per_item'], 'ms')} CPU per "
            f"photo vs {_fmt(fig['reference']['cpu_ms_per_item'], 'ms')} for the model alone; on a "
            f"saturated 2-core CPU input work cannot hide behind compute (ceiling "
            f"{_fmt(fig['details']['cpu_bound_ceiling'], 'x', 2)}): the input cost per photo is "
            "the limit (decode + resize, see the decode figure).")
    fig = by_id.get("feature_cache")
    if fig and fig["met"] is False:
        d = fig["details"]
        out.append(
            f"feature_cache: the cache makes extraction {_fmt(d['extraction_speedup'], 'x', 1)} "
            f"faster ({_fmt(d['extraction_first_s'], 's')} -> {_fmt(d['extraction_second_s'], 's')}); "
            f"the rest of each run (linear-probe fit, evaluation with bootstrap intervals, saving) "
            f"costs {_fmt(d['head_search_and_evaluation_s'], 's')}, which the cache cannot remove "
            "and which bounds the ratio.")
    for fig in results:
        if fig["id"].startswith("memory_") and fig["met"] is False:
            d = fig["details"]
            sizes = list(d.get("per_size", {}))
            growth = before = None
            if len(sizes) == 2:
                small, large = (d["per_size"][k] for k in sizes)
                growth = (large["peak_process_mib"] or 0) - (small["peak_process_mib"] or 0)
                before = (large["peak_before_training_mib"] or 0) - (small["peak_before_training_mib"] or 0)
            during = (growth - before) if None not in (growth, before) else None
            out.append(
                f"{fig['id']}: peak RSS grows {_fmt(fig['ratio'], 'x', 2)} "
                f"(+{_fmt(growth, 'MiB')}): +{_fmt(before, 'MiB')} is already there before the "
                f"measured training (the larger listings table, its parts and features) and "
                f"+{_fmt(during, 'MiB')} arises during it. The photo pipeline holds no photo set "
                "in memory (indices are shuffled, photos are read per batch), so the training-"
                "phase growth is per-row state (tabular arrays, predictions, tf.data's autotuned "
                "buffers over a longer epoch), not photos.")
    return out


# =========================================================================== main

def _usable_paths(data_dir: Path, limit: int | None) -> list[str]:
    from shared.dataset import load_dataset

    paths = [str(p) for p in load_dataset(data_dir).image_paths]
    return paths[:limit] if limit else paths


@contextlib.contextmanager
def private_cache(workdir: Path):
    """Point AIRBNB_DL_CACHE at a fresh folder for the run; copy only the converted weights."""
    from shared.backbones import efficientnet_lite0

    previous, source = os.environ.get("AIRBNB_DL_CACHE"), None
    with contextlib.suppress(Exception):
        source = efficientnet_lite0.cached_weights_path()
    cache = workdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["AIRBNB_DL_CACHE"] = str(cache)
    with contextlib.suppress(Exception):
        target = efficientnet_lite0.cached_weights_path()
        if source is not None and source.is_file() and not target.exists():
            shutil.copy2(source, target)
    try:
        yield cache
    finally:
        if previous is None:
            os.environ.pop("AIRBNB_DL_CACHE", None)
        else:
            os.environ["AIRBNB_DL_CACHE"] = previous


def run_benchmarks(data_dir: Path, settings: Settings, selected: list[str], workdir: Path,
                   log=print) -> dict:
    """Run the ``selected`` benchmarks; return the benchmarks.json document."""
    started = time.time()
    report = {"schema_version": SCHEMA_VERSION,
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
              "machine": machine_info(), "settings": settings.to_json(),
              "data_dir": str(data_dir), "benchmarks": selected,
              "partial": selected != list(BENCHMARKS), "load_average": {"start": _load()},
              "parallel_capacity": {"start": parallel_capacity()}, "results": []}
    from shared.devices import configure_determinism, setup_devices

    setup_devices()  # the same device setup as every training entry point
    configure_determinism(config.SEED)
    with private_cache(workdir):
        quick_data = data_dir
        if settings.rows:
            quick_data = Path(replicate_dataset(data_dir, workdir / "data-rows", 1,
                                                settings.rows)["data_dir"])
        paths = _usable_paths(quick_data, settings.photos) if {"decode", "backbone"} & set(selected) else []
        steps = [("decode", lambda: [bench_decode(paths, settings)]),
                 ("backbone", lambda: [bench_backbone(paths[:settings.backbone_photos], settings,
                                                      workdir)]),
                 ("feature_cache", lambda: [bench_feature_cache(
                     quick_data, settings, workdir, warm=bool({"decode", "backbone"} & set(selected)))]),
                 ("memory", lambda: bench_memory(data_dir, settings, workdir,
                                                 warm="feature_cache" in selected)),
                 ("e2e", lambda: bench_e2e(data_dir, settings, workdir))]
        for name, step in steps:
            if name not in selected:
                continue
            load_before = _load()
            log(f"[bench] {name} ... (load {load_before})")
            capacity = parallel_capacity()["speedup"]
            start = time.perf_counter()
            try:
                figures = step()
            except Exception as exc:  # noqa: BLE001 - one failed figure must not lose the run
                import traceback

                log(traceback.format_exc())
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                figures = [_skipped(name, f"{name} (failed)",
                                    f"failed: {type(exc).__name__}: {first_line[:300]}")]
            for fig in figures:
                fig["seconds"] = round(time.perf_counter() - start, 1)
                fig["load_average"] = {"before": load_before, "after": _load()}
                fig["parallel_capacity_before"] = capacity
                report["results"].append(fig)
                ratio = "skipped" if fig["skipped"] else _fmt(fig["ratio"], "x", 2)
                log(f"[bench]   {fig['id']}: {ratio} (goal {_goal(fig)}: {_met(fig['met'])}; "
                    f"{fig['seconds']:.0f} s)")
            write_json_atomic(workdir / "benchmarks.partial.json", report)  # progress so far
    report["load_average"]["end"] = _load()
    report["parallel_capacity"]["end"] = parallel_capacity()
    report["seconds"] = round(time.time() - started, 1)
    report["findings"] = findings(report["results"])
    return report


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json_atomic(out_dir / "benchmarks.json", report)
    md_path = write_text_atomic(out_dir / "benchmarks.md", render_markdown(report))
    return md_path, json_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.benchmarks",
                                     description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary folder")
    parser.add_argument("--e2e-smoke", action="store_true",
                        help="development: run the deliverables with --smoke (never a full run)")
    parser.add_argument("--from-json", help="re-render benchmarks.md from this benchmarks.json")
    # internal: one measurement in a fresh process
    parser.add_argument("--child", choices=("train", "original"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--models-dir", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--finetune-epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--head-epochs", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, default=224, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.child:
        result = child_train(args) if args.child == "train" else child_original(args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        report["findings"] = findings(report.get("results", []))  # derived from the results
        out = Path(args.out) if args.out else Path(args.from_json).parent
        md, _ = write_report(report, out)
        print(f"rendered {md}")
        return 0

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
        (args.repeats, args.photos, args.replication, args.memory_repeats, args.e2e_smoke))
    if args.out:
        out = Path(args.out).expanduser().resolve()
        if not full and out == config.DOCS_DIR.resolve():
            print("benchmarks: a quick or partial run never writes over docs/benchmarks.*; "
                  "give another --out", file=sys.stderr)
            return 2
    else:
        out = config.DOCS_DIR if full else Path(tempfile.mkdtemp(prefix="airbnb-dl-bench-out-"))
    try:
        data_dir = config.resolve_data_dir(args.data_dir)
    except config.DataDirError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
    settings = Settings(quick=args.quick, repeats=args.repeats, photos=args.photos,
                        replication=args.replication, memory_repeats=args.memory_repeats)
    settings.e2e_smoke = args.e2e_smoke
    workdir = Path(tempfile.mkdtemp(prefix="airbnb-dl-bench-"))
    print(f"[bench] {'quick' if args.quick else 'full' if full else 'partial'} run: "
          f"{', '.join(selected)}; data {data_dir}; work folder {workdir}; output {out}", flush=True)
    try:
        report = run_benchmarks(data_dir, settings, selected,
                                workdir, log=lambda msg: print(msg, flush=True))
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    md, js = write_report(report, out)
    print(f"[bench] done in {report['seconds'] / 60:.1f} min:\n  {md}\n  {js}")
    for text in report["findings"]:
        print(f"[bench] finding: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
