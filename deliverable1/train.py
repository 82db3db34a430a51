"""Train every deliverable-1 model in order (used by deliverable 2 and the benchmarks when the
deliverable-1 models are missing; the report runs the same steps one by one with prose).

    python -m deliverable1.train [--data-dir D] [--models-dir M] [--smoke]
"""

from __future__ import annotations

import time

from deliverable1 import baselines, cnn_scratch, mlp, transfer
from shared.experiment import Experiment, training_main

MODEL_NAMES = ("mean", "ridge", "hgb", "mlp", "cnn_scratch", "transfer_frozen", "transfer_finetuned")


def train_all(exp: Experiment, include=MODEL_NAMES, log=print) -> Experiment:
    """Train (and save) the models named in ``include`` on ``exp``'s split."""
    steps = [("mean", baselines.train_mean), ("ridge", baselines.train_ridge),
             ("hgb", baselines.train_hgb), ("mlp", mlp.train_mlp),
             ("cnn_scratch", cnn_scratch.train_cnn_scratch)]
    for name, step in steps:
        if name in include:
            start = time.perf_counter()
            step(exp)
            log(f"{name}: test MAE {exp.results[name]['test']['mae']:.2f} EUR "
                f"({time.perf_counter() - start:.0f} s)")
    if {"transfer_frozen", "transfer_finetuned"} & set(include):
        frozen, _ = transfer.train_transfer_frozen(exp)
        log(f"transfer_frozen: test MAE {exp.results['transfer_frozen']['test']['mae']:.2f} EUR")
        if "transfer_finetuned" in include:
            transfer.train_transfer_finetuned(exp, frozen)
            log(f"transfer_finetuned: test MAE "
                f"{exp.results['transfer_finetuned']['test']['mae']:.2f} EUR")
    return exp


def main(argv=None) -> int:
    return training_main(train_all, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
