"""Figures ``memory_<model>``: peak RSS of training on the dataset vs on a replicated, larger one.

Both sizes are bounded, whatever the dataset's size: the 1x side is the first
``settings.max_rows`` rows of listings.csv, the large side that table ``settings.replication``
times under new IDs (:func:`benchmarks.harness.bounded_dataset`). The question is whether the
peak grows with the number of rows, which the ratio of the two answers at any size; the cap keeps
the eight training children of a full run to ~15 min on 2 cores.

Each training runs in a fresh process (a *child*, ``python -m benchmarks.memory train ...``)
started by :func:`benchmarks.harness.run_child` under :mod:`benchmarks.launcher`, which reports
the child's own peak RSS (the kernel's ``ru_maxrss`` of the command it waited for, not counting
the benchmark process); the child itself reports its RSS at the phase boundaries.
``memory_original_float64`` does the same for the original's approach (every photo in one float64
array, ``python -m benchmarks.memory original``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.harness import (bounded_dataset, figure, fmt, median_of, print_result, ratio_of,
                                run_child)
from benchmarks.launcher import peak_rss_mib

if TYPE_CHECKING:
    from benchmarks.harness import Settings

#: model -> the training function measured.
ENTRIES = {"transfer_finetuned": "shared.models.families.transfer.train_transfer_finetuned",
           "late_fusion": "shared.models.families.late_fusion.train_late_fusion"}
ORIGINAL_IMAGE_SIZE = 224  # pixels: the original's photos


def run(data_dir: Path, settings: Settings, workdir: Path, warm: bool = False) -> list[dict]:
    """Peak RSS of training on the first ``settings.max_rows`` rows of ``data_dir`` vs on a
    ``settings.replication``-times copy of them; the original's float64 load at both sizes. One
    figure per model in :data:`ENTRIES`, then ``memory_original_float64``.

    ``warm``: the feature cache already holds the dataset's features (the feature-cache figure
    ran), so no warm-up child is needed.
    """
    from shared.data.dataset import load_dataset

    factor, cap = settings.replication, settings.max_rows
    copies = {"1x": bounded_dataset(data_dir, workdir, cap),
              f"{factor}x": bounded_dataset(data_dir, workdir, cap, factor)}
    sizes = {key: Path(info["data_dir"]) for key, info in copies.items()}
    listings = {key: int(len(load_dataset(path, check_photos=False).frame))
                for key, path in sizes.items()}
    data = data_used(copies["1x"], listings, factor, cap)
    counter = iter(range(10**6))

    def child(args: list[str]) -> dict:
        return _run_memory_child(args, workdir / "memory-logs" / f"{next(counter)}.log")

    def train(model: str, key: str) -> dict:
        return child(["train", "--model", model, "--data-dir", str(sizes[key]),
                      "--models-dir", str(workdir / f"memory-models-{next(counter)}"),
                      "--finetune-epochs", str(settings.finetune_epochs),
                      "--head-epochs", str(settings.head_epochs)]
                     + (["--smoke"] if settings.smoke else []))

    keys = list(sizes)
    jobs = []  # (model, size key), alternating the size order between rounds
    for round_ in range(settings.memory_repeats):
        for model in ENTRIES:
            jobs += [(model, key) for key in (keys if round_ % 2 == 0 else keys[::-1])]
    if settings.quick:
        # quick: two children at a time (peak RSS is per process, so they do not interfere)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda job: train(*job), jobs))
    else:
        if not warm:
            train(next(iter(ENTRIES)), "1x")  # warm-up: fills the feature cache and page cache
        results = [train(*job) for job in jobs]

    figures = [_training_figure(name, factor, keys, listings, settings,
                                {key: [r for job, r in zip(jobs, results, strict=True) if job == (name, key)]
                                 for key in keys}, data)
               for name in ENTRIES]
    return figures + [_original_figure(sizes, listings, factor, settings, child, data)]


def data_used(small: dict, listings: dict, factor: int, cap: int) -> str:
    """The figure's data phrase: rows taken from the dataset, listings at each size, the cap."""
    large = listings[f"{factor}x"]
    return (f"the first {small['rows']:,} of the dataset's {small['source_rows']:,} rows as 1x "
            f"({listings['1x']:,} usable listings), that table {factor} times under new IDs as "
            f"{factor}x ({large:,} listings); max_rows={cap:,} caps the 1x side whatever the "
            "dataset's size (the ratio answers whether memory grows with rows at any size)")


def _run_memory_child(args: list[str], log: Path) -> dict:
    """One child's result, with its wall time and its peak RSS (``peak_process_mib``)."""
    out = run_child(["-m", "benchmarks.memory", *args], log)
    if out["result"] is None:
        raise RuntimeError(f"benchmark child {' '.join(args)} printed no result (see {log})")
    return {**out["result"], "peak_process_mib": out["peak_rss_mib"],
            "wall_s": round(out["wall_s"], 1)}


def _training_figure(name: str, factor: int, keys: list[str], listings: dict,
                     settings: Settings, runs: dict[str, list[dict]], data: str) -> dict:
    summary = {key: _memory_summary(values) for key, values in runs.items()}
    large, small = keys[1], keys[0]
    measured = {"label": f"{factor}x dataset ({listings[large]} listings)",
                "value": summary[large]["peak_process_mib"], "unit": "MiB",
                "runs": [r["peak_process_mib"] for r in runs[large]]}
    reference = {"label": f"1x dataset ({listings[small]} listings)",
                 "value": summary[small]["peak_process_mib"], "unit": "MiB",
                 "runs": [r["peak_process_mib"] for r in runs[small]]}
    return figure(
        f"memory_{name}", f"Memory: peak RSS training {name}, {factor}x dataset vs 1x",
        measured, reference, ratio_of(measured["value"], reference["value"]),
        f"peak RSS {factor}x / peak RSS 1x",
        details={"per_size": summary, "entry_point": ENTRIES[name], "listings": listings,
                 "training_phase_ratio": ratio_of(summary[large]["peak_training_phase_mib"],
                                                  summary[small]["peak_training_phase_mib"]),
                 "runs": runs, "max_rows": settings.max_rows},
        notes=[_memory_note(name, settings)], data=data)


def _original_bytes(n: int, size: int) -> int:
    return n * size * size * 3 * 8


def _original_figure(sizes: dict[str, Path], listings: dict, factor: int, settings: Settings,
                     child, data: str) -> dict:
    """The original's approach: every photo resized and held in one float64 array."""
    import psutil

    size, keys = ORIGINAL_IMAGE_SIZE, list(sizes)
    runs = {key: [] for key in sizes}
    notes = []
    for key, path in sizes.items():
        need = _original_bytes(listings[key], size)
        available = psutil.virtual_memory().available
        if need > 0.6 * available:
            notes.append(f"{key}: skipped, the array needs {need / 2**30:.1f} GiB and only "
                         f"{available / 2**30:.1f} GiB are available (value = the array alone)")
            runs[key].append({"peak_process_mib": round(need / 2**20, 1), "projected": True})
            continue
        for _ in range(settings.memory_repeats):
            runs[key].append(child(["original", "--data-dir", str(path),
                                    "--image-size", str(size)]))
    values = {key: median_of(r["peak_process_mib"] for r in runs[key]) for key in runs}
    return figure(
        "memory_original_float64", f"Memory: the original's approach (all photos in one float64 "
        f"array, {size} px), {factor}x vs 1x",
        {"label": f"{factor}x dataset", "value": values[keys[1]], "unit": "MiB",
         "runs": [r["peak_process_mib"] for r in runs[keys[1]]]},
        {"label": "1x dataset", "value": values[keys[0]], "unit": "MiB",
         "runs": [r["peak_process_mib"] for r in runs[keys[0]]]},
        ratio_of(values[keys[1]], values[keys[0]]), f"peak RSS {factor}x / peak RSS 1x",
        details={"array_gib": {k: round(_original_bytes(listings[k], size) / 2**30, 2) for k in keys},
                 "listings": listings, "runs": runs},
        notes=["Loading only (Pillow decode + resize into a preallocated (n, 224, 224, 3) float64 "
               "array, no TensorFlow): a lower bound of the original's training peak, which adds "
               "TensorFlow and a float32 copy for model.fit.", *notes], data=data)


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
            "of the process = the child's own peak RSS: a small launcher starts it and reports "
            "the kernel's ru_maxrss of that child once it has exited (RUSAGE_CHILDREN), so the "
            "benchmark process's own memory is not counted. Training phase = the child's peak "
            "(ru_maxrss of RUSAGE_SELF) when a new peak was reached during the measured call, "
            "else the highest RSS sampled every 10 ms during it.")


def _memory_summary(runs: list[dict]) -> dict:
    return {key: median_of(r.get(key) for r in runs)
            for key in ("peak_process_mib", "peak_training_phase_mib", "rss_after_prepare_mib",
                        "peak_before_training_mib", "wall_s", "train_seconds")}


def section(fig: dict) -> list[str]:
    """Markdown details: per dataset size, the RSS at each phase (training figures), or the size
    of the array alone (the original's approach)."""
    details = fig["details"]
    if fig["id"] == "memory_original_float64":
        return ["Array alone: " + ", ".join(f"{k} {v} GiB" for k, v in details["array_gib"].items())
                + ".", ""]
    if "per_size" not in details:
        return []
    lines = ["| dataset | listings | RSS after prepare | peak before training | peak during "
             "training | peak of the process | wall |", "|---|---|---|---|---|---|---|"]
    for key, s in details["per_size"].items():
        lines.append(f"| {key} | {details['listings'][key]} | "
                     f"{fmt(s['rss_after_prepare_mib'], 'MiB')} | "
                     f"{fmt(s['peak_before_training_mib'], 'MiB')} | "
                     f"{fmt(s['peak_training_phase_mib'], 'MiB')} | "
                     f"{fmt(s['peak_process_mib'], 'MiB')} | {fmt(s['wall_s'], 's')} |")
    return lines + ["", f"Training-phase ratio: {fmt(details['training_phase_ratio'], 'x', 2)}.", ""]


def finding(fig: dict) -> str:
    """Where the growth of the peak arises: before the measured training or during it."""
    d = fig["details"]
    sizes = list(d.get("per_size", {}))
    growth = before = None
    if len(sizes) == 2:
        small, large = (d["per_size"][k] for k in sizes)
        growth = (large["peak_process_mib"] or 0) - (small["peak_process_mib"] or 0)
        before = (large["peak_before_training_mib"] or 0) - (small["peak_before_training_mib"] or 0)
    during = (growth - before) if None not in (growth, before) else None
    return (
        f"{fig['id']}: peak RSS grows {fmt(fig['ratio'], 'x', 2)} "
        f"(+{fmt(growth, 'MiB')}): +{fmt(before, 'MiB')} is already there before the "
        f"measured training (the larger listings table, its parts and features) and "
        f"+{fmt(during, 'MiB')} arises during it. The photo pipeline holds no photo set "
        "in memory (indices are shuffled, photos are read per batch), so the training-"
        "phase growth is per-row state (tabular arrays, predictions, tf.data's autotuned "
        "buffers over a longer epoch), not photos.")


# =========================================================================== children

def rss_mib(process=None) -> float:
    """Resident set size now, MiB, of ``process`` (a ``psutil.Process``; default: this one)."""
    import psutil

    return round((process or psutil.Process()).memory_info().rss / 2**20, 1)


class RssSampler:
    """Highest RSS (MiB) of this process seen while the ``with`` block runs, polled every
    ``interval`` seconds by a background thread (a lower bound of the true peak)."""

    def __init__(self, interval: float = 0.01):
        import psutil

        self.interval, self.peak_mib = interval, 0.0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> None:
        self.peak_mib = max(self.peak_mib, rss_mib(self._process))

    def _poll(self) -> None:
        self._sample()
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def child_train(args: argparse.Namespace) -> dict:
    """Fresh process: prepare + frozen head + the measured training; RSS per phase, MiB."""
    import dataclasses

    from shared.features.backbones import DEFAULT_BACKBONE
    from shared.models.families import late_fusion
    from shared.models.families.mlp import config_of, train_mlp
    from shared.models.families.transfer import (default_image_size, train_transfer_finetuned,
                                                 train_transfer_frozen)
    from shared.run.budgets import budget_for
    from shared.run.start import start_run

    base = budget_for(args.smoke)
    budget = base.replace(  # the measured epochs, whatever the budget says
        mlp=dataclasses.replace(base.mlp, epochs=args.head_epochs),
        transfer=dataclasses.replace(base.transfer, finetune_epochs=args.finetune_epochs),
        late_fusion=dataclasses.replace(base.late_fusion, finetune_epochs=args.finetune_epochs))
    exp = start_run(args.data_dir, args.models_dir, smoke=args.smoke, budget=budget)
    data, cfg = exp.data, exp.cfg
    after_prepare = rss_mib()
    if args.model == "transfer_finetuned":
        frozen = train_transfer_frozen(data, cfg, exp.features).bundle

        def train():
            return train_transfer_finetuned(data, cfg, frozen).bundle
    else:  # late_fusion
        size = default_image_size(cfg)
        raw = exp.features(DEFAULT_BACKBONE, size)  # as deliverable 2 uses them
        # the tabular branch is deliverable 1's chosen mlp: one candidate, few epochs, suffices
        tab_config = config_of(train_mlp(data, cfg, n_configs=1).bundle.params)

        def train():
            return late_fusion.train_late_fusion(data, cfg, raw, DEFAULT_BACKBONE, size,
                                                 tab_config).bundle
    before = peak_rss_mib()
    with RssSampler() as sampler:
        start = time.perf_counter()
        bundle = train()
        seconds = time.perf_counter() - start
    after = peak_rss_mib()
    return {"model": args.model, "n_listings": int(len(exp.data.dataset.frame)),
            "n_train": int(len(exp.data.parts["train"].frame)), "image_size": int(bundle.image_size),
            "rss_after_prepare_mib": after_prepare, "peak_before_training_mib": before,
            # a new peak during training is exact (the kernel's); otherwise the sampled highest
            "peak_training_phase_mib": after if after > before else sampler.peak_mib,
            "train_seconds": round(seconds, 1)}


def child_original(args: argparse.Namespace) -> dict:
    """Fresh process: the original's approach, every photo in one (n, s, s, 3) float64 array."""
    from benchmarks.decode import pillow_photo
    from shared.data.dataset import load_dataset

    paths = load_dataset(args.data_dir, check_photos=False).image_paths
    size = args.image_size
    before = rss_mib()
    images = np.empty((len(paths), size, size, 3), dtype=np.float64)
    for i, path in enumerate(paths):
        images[i] = pillow_photo(path, size)
    return {"n_photos": int(len(paths)), "array_mib": round(images.nbytes / 2**20, 1),
            "rss_before_load_mib": before}


def build_child_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory",
                                     description="One memory measurement in this fresh process "
                                                 "(started by python -m benchmarks).")
    children = parser.add_subparsers(dest="child", required=True)
    train = children.add_parser("train", help="prepare, then train one model")
    train.add_argument("--model", required=True, choices=list(ENTRIES))
    train.add_argument("--data-dir", required=True)
    train.add_argument("--models-dir", required=True)
    train.add_argument("--smoke", action="store_true")
    train.add_argument("--finetune-epochs", type=int, default=1)
    train.add_argument("--head-epochs", type=int, default=20)
    original = children.add_parser("original", help="load every photo into one float64 array")
    original.add_argument("--data-dir", required=True)
    original.add_argument("--image-size", type=int, default=ORIGINAL_IMAGE_SIZE)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_child_parser().parse_args(argv)
    print_result(child_train(args) if args.child == "train" else child_original(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
