"""Train every deliverable-1 model in order (used by deliverable 2 and the benchmarks when the
deliverable-1 models are missing; the report runs the same steps one by one with prose).

    python -m deliverable1.train [--data-dir D] [--models-dir M] [--smoke]
"""

from __future__ import annotations

from deliverable1 import baselines, cnn_scratch, mlp, transfer
from shared.experiment import Experiment, timed_step, training_main

MODEL_NAMES = ("mean", "ridge", "hgb", "mlp", "cnn_scratch", "transfer_frozen", "transfer_finetuned")


def train_all(exp: Experiment, include=MODEL_NAMES, log=print) -> Experiment:
    """Train (and save) the models named in ``include`` on ``exp``'s split."""
    steps = [("mean", baselines.train_mean), ("ridge", baselines.train_ridge),
             ("hgb", baselines.train_hgb), ("mlp", mlp.train_mlp),
             ("cnn_scratch", cnn_scratch.train_cnn_scratch)]
    for name, step in steps:
        if name in include:
            timed_step(exp, name, lambda: step(exp), log)
    if {"transfer_frozen", "transfer_finetuned"} & set(include):
        frozen, _ = timed_step(exp, "transfer_frozen",
                               lambda: transfer.train_transfer_frozen(exp), log)
        if "transfer_finetuned" in include:
            timed_step(exp, "transfer_finetuned",
                       lambda: transfer.train_transfer_finetuned(exp, frozen), log)
    return exp


def main(argv=None) -> int:
    return training_main(train_all, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
