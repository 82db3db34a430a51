"""Figure ``feature_cache``: deliverable 1's transfer_frozen, second run (features cached) vs first
run (empty feature cache), seconds."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.harness import figure, fmt, median_of, ratio_of

if TYPE_CHECKING:
    from benchmarks.harness import Settings


def run(data_dir: Path, settings: Settings, workdir: Path, warm: bool = False) -> dict:
    """train_transfer_frozen with an empty feature cache, then again with every feature cached.

    ``warm``: the process already ran the backbone (earlier figures), so the untimed warm-up
    pair is skipped (it costs minutes at full size).
    """
    from shared.models.families.transfer import default_image_size, train_transfer_frozen
    from shared.features.backbones import DEFAULT_BACKBONE
    from shared.run.config import RunConfig
    from shared.features.model_data import prepare_data
    from shared.features.cache import feature_cache_dir
    from shared.run.budgets import budget_for
    from shared.run.experiment import Experiment

    models = workdir / "feature-cache-models"
    cfg = RunConfig(data_dir=Path(data_dir), models_dir=models, budget=budget_for(settings.smoke),
                    smoke=settings.smoke)
    data = prepare_data(data_dir, models, cfg.seed)
    size = default_image_size(cfg)  # train_transfer_frozen's default
    # every feature folder (each backbone train_transfer_frozen tries, with and without flips)
    folder = feature_cache_dir(DEFAULT_BACKBONE, size).parent

    def timed() -> tuple[float, dict]:
        """One train_transfer_frozen call in a new run (features read or extracted afresh)."""
        run = Experiment(data, cfg)
        start = time.perf_counter()
        train_transfer_frozen(data, cfg, run.features)
        seconds = time.perf_counter() - start
        stats = list(run.extraction.values())
        return seconds, {key: sum(s[key] for s in stats) for key in ("seconds", "computed", "cached")}

    pairs = []
    warmup = 0 if (settings.quick or warm) else 1
    for index in range(warmup + settings.repeats):
        shutil.rmtree(folder, ignore_errors=True)
        first, first_stats = timed()
        second, second_stats = timed()
        if index >= warmup:
            pairs.append({"first_s": first, "second_s": second,
                          "first_extraction_s": first_stats["seconds"],
                          "second_extraction_s": second_stats["seconds"],
                          "first_computed": first_stats["computed"],
                          "second_cached": second_stats["cached"]})
    first_med = median_of(p["first_s"] for p in pairs)
    second_med = median_of(p["second_s"] for p in pairs)
    measured = {"label": "second run (every feature cached)", "value": second_med, "unit": "s",
                "runs": [round(p["second_s"], 2) for p in pairs]}
    reference = {"label": "first run (empty feature cache)", "value": first_med, "unit": "s",
                 "runs": [round(p["first_s"], 2) for p in pairs]}
    extraction_first = median_of(p["first_extraction_s"] for p in pairs)
    extraction_second = median_of(p["second_extraction_s"] for p in pairs)
    return figure(
        "feature_cache", "Feature cache: transfer_frozen, second run vs first run", measured,
        reference, ratio_of(first_med, second_med), "first-run seconds / second-run seconds",
        details={"listings": int(len(data.dataset.frame)), "image_size": size,
                 "features_computed_first_run": pairs[-1]["first_computed"],
                 "features_cached_second_run": pairs[-1]["second_cached"],
                 "extraction_first_s": extraction_first,
                 "extraction_second_s": extraction_second,
                 "extraction_speedup": ratio_of(extraction_first, extraction_second),
                 "head_search_and_evaluation_s": median_of(
                     p["second_s"] - p["second_extraction_s"] for p in pairs),
                 "warmup_pairs": warmup, "smoke_settings": cfg.smoke, "pairs": pairs},
        notes=["Whole train_transfer_frozen call (features, head search on validation, "
               "evaluation, saving) with the project's default settings; extraction_* isolate "
               "extract_features. The features folder (every backbone and flip tried) is deleted "
               "before each first run."
               + ("" if warmup else " No separate warm-up pair: the process is already warm "
                  "from the previous figures (TensorFlow, backbone, photos in the page cache).")],
        data=(f"every usable listing ({len(data.dataset.frame):,}; "
              f"{pairs[-1]['first_computed']:,} photo features computed by each first run)"))


def section(fig: dict) -> list[str]:
    d = fig["details"]
    return [f"extract_features alone: {fmt(d['extraction_first_s'], 's')} (first, "
            f"{d['features_computed_first_run']} photos computed) vs "
            f"{fmt(d['extraction_second_s'], 's')} (second, "
            f"{d['features_cached_second_run']} read from the cache): "
            f"**{fmt(d['extraction_speedup'], 'x', 1)}**. The rest of the second run "
            f"(head search, evaluation, saving): {fmt(d['head_search_and_evaluation_s'], 's')}.",
            ""]


def finding(fig: dict) -> str:
    d = fig["details"]
    return (
        f"feature_cache: the cache makes extraction {fmt(d['extraction_speedup'], 'x', 1)} "
        f"faster ({fmt(d['extraction_first_s'], 's')} -> {fmt(d['extraction_second_s'], 's')}); "
        f"the rest of each run (linear-probe fit, evaluation with bootstrap intervals, saving) "
        f"costs {fmt(d['head_search_and_evaluation_s'], 's')}, which the cache cannot remove "
        "and which bounds the ratio.")
