"""What a run records about itself and its models: provenance, the dataset's name, metrics.json.

Datasets are named by directory name and the sha256 of ``listings.csv``, never by a machine's
absolute path. ``metrics.json``: ``{"dataset": {...}, "run": {"device", "cpu", "smoke",
"budget", "seconds", ...}, "models": {NAME: {"val", "test", "intervals", "params", ...}}}``.
"""

from __future__ import annotations

import time
from pathlib import Path

from shared import environment
from shared.data.split import PART_NAMES
from shared.io import write_json_atomic
from shared.models.bundle import ModelBundle


def provenance(data, cfg) -> dict:
    """Everything that changes a model trained in this run: data and split, budget (name and
    fingerprint) and seed; a saved model is reused only when they agree."""
    return {**data.provenance(), "budget": cfg.budget.name,
            "budget_fingerprint": cfg.budget.fingerprint(), "seed": int(cfg.seed)}


def provenance_difference(saved: dict, current: dict) -> str | None:
    """Why a model saved with provenance ``saved`` cannot be reused in a run of ``current``
    (one phrase), or None when they agree."""
    if not saved:
        return "the saved model does not record what it was trained on"
    if saved.get("budget_fingerprint") != current["budget_fingerprint"]:
        return (f"the saved model was trained under another budget ({saved.get('budget', 'unknown')}"
                f", this run: {current['budget']})")
    if saved.get("listings_sha256") != current["listings_sha256"]:
        return "the saved model was trained on another version of the data"
    differing = sorted(k for k in current if saved.get(k) != current[k])
    if differing:
        return "the saved model was trained on another split or settings (" + ", ".join(differing) + ")"
    return None


def architecture_of(bundle: ModelBundle) -> dict:
    """For a Keras model {"n_params", "architecture": one row per top-level layer}; {} otherwise.<<"""
    if not bundle.is_keras:
        return {}
    model = bundle.estimator
    rows = [{"layer": layer.name, "type": type(layer).__name__,
             "output_shape": str(getattr(getattr(layer, "output", None), "shape", "")),
             "params": int(layer.count_params())} for layer in model.layers]
    return {"n_params": int(model.count_params()), "architecture": rows}


def dataset_location(data_dir) -> dict:
    """{"source": directory name, "source_path": path relative to the project, when inside it}.<<"""
    if data_dir is None:
        return {"source": None}
    path = Path(data_dir).resolve()
    out = {"source": path.name}
    if path.is_relative_to(environment.PROJECT_ROOT.resolve()):
        out["source_path"] = str(path.relative_to(environment.PROJECT_ROOT.resolve()))
    return out


def dataset_info(data, seed: int) -> dict:
    """The dataset section of ``metrics.json`` for the run's data (``ModelData``)."""
    info = data.dataset.summary()
    info.pop("data_dir", None)
    info.update({**dataset_location(data.dataset.data_dir), "seed": int(seed),
                 "split": {p: int(len(data.parts[p].frame)) for p in PART_NAMES},
                 "split_fingerprint": data.split.fingerprint,
                 "n_tabular_features": int(data.tabular["train"].shape[1])})
    return info


def write_metrics(path, dataset: dict, models: dict, run: dict) -> Path:
    """Write ``metrics.json`` atomically; ``run.cpu`` records the CPU kind, so the reproduction
    check knows whether a rerun must match exactly."""
    run = {**run}
    run.setdefault("cpu", environment.cpu_kind())
    return write_json_atomic(path, {"dataset": dataset, "run": run, "models": models})


def save_json_if_chief(cfg, path: Path, data) -> Path | None:
    """Write a run artefact (JSON) only on the chief of a multi-worker run."""
    return write_json_atomic(path, data) if cfg.is_chief else None


def write_run_metrics(exp, path, extra_run: dict | None = None) -> Path | None:
    """``metrics.json`` of the run ``exp``: dataset, every evaluated model and the run (plus
    ``extra_run``). Written by the chief only (None elsewhere)."""
    if not exp.cfg.is_chief:
        return None
    run = {"device": exp.cfg.device, "smoke": exp.cfg.smoke, "budget": exp.cfg.budget.name,
           "seconds": round(time.time() - exp.started, 1), **(extra_run or {})}
    return write_metrics(path, dataset_info(exp.data, exp.cfg.seed), exp.results, run)
