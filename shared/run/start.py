"""The start of every run, and the command line of ``python -m deliverableN.train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from shared import environment
from shared.features.model_data import prepare_data
from shared.run.budgets import BUDGET_NAMES, Budget, budget_for
from shared.run.config import SEED, RunConfig
from shared.run.devices import configure_determinism, setup_devices
from shared.run.experiment import Experiment


def prepare(data_dir, models_dir, smoke: bool = False, budget: Budget | None = None,
            seed: int = SEED) -> Experiment:
    """An :class:`Experiment` on the current devices (no device setup), with the budget of ``smoke``
    (or ``budget``): for tests, benchmarks and secondary datasets."""
    cfg = RunConfig(data_dir=Path(data_dir), models_dir=Path(models_dir),
                    budget=budget or budget_for(smoke), smoke=smoke, seed=seed)
    return Experiment(prepare_data(cfg.data_dir, cfg.models_dir, cfg.seed_for("run")), cfg)


def start_run(data_dir, models_dir, smoke: bool = False, budget: Budget | None = None,
              seed: int = SEED) -> Experiment:
    """The common start of every training run: devices, strategy, budget, seed and deterministic
    ops resolved once, then the data prepared."""
    info = setup_devices()
    configure_determinism(seed)
    cfg = RunConfig(data_dir=Path(data_dir), models_dir=Path(models_dir),
                    budget=budget or budget_for(smoke), smoke=smoke, seed=seed,
                    device=info.describe(), strategy=info.strategy, replicas=info.replicas,
                    is_chief=info.is_chief)
    return Experiment(prepare_data(cfg.data_dir, cfg.models_dir, cfg.seed_for("run"),
                                   persist=cfg.is_chief), cfg)


def training_main(run, deliverable: str, description: str, argv=None) -> int:
    """Command-line entry of ``python -m deliverableN.train``: ``run(data_dir, models_dir, smoke,
    output_dir, budget)``.

    ``--out`` (``metrics.json``) defaults to ``docs/<deliverable>/``; a smoke run defaults to a
    scratch folder for its models and metrics, so it never replaces the published ones.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir")
    parser.add_argument("--models-dir")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--budget", choices=BUDGET_NAMES,
                        help="training budget (default: full, or smoke with --smoke)")
    parser.add_argument("--out", help="folder for metrics.json (default: docs/<deliverable>/; "
                                      "with --smoke: <models-dir>/smoke-metrics/<deliverable>/, "
                                      "the models dir being a scratch folder unless given)")
    args = parser.parse_args(argv)
    models_dir = (environment.smoke_models_dir(args.models_dir) if args.smoke
                  else environment.resolve_models_dir(args.models_dir))
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = models_dir / "smoke-metrics" / deliverable
    else:
        out = environment.DOCS_DIR / deliverable
    with environment.showing_progress("stderr"):   # for this command only (a test calls it in-process)
        result = run(environment.resolve_data_dir(args.data_dir), models_dir, smoke=args.smoke,
                     output_dir=out, budget=budget_for(args.smoke, args.budget))
    print(f"metrics written to {result.metrics_path}")
    return 0
