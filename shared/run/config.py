"""The one configuration a training run carries, and the one place its seeds come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.run.budgets import Budget

#: The run seed when none is given; every seed derives from it (:meth:`RunConfig.seed_for`).
SEED = 42

#: How each use of randomness derives its seed from the run seed ``s`` (``i``: an index).
SEED_OFFSETS = {
    "run": lambda s, i: s,                 # split, weight init, shuffles, bootstrap, samples
    "candidate": lambda s, i: s + i,        # the i-th candidate of a validation search
    "seed_study": lambda s, i: s + 1000 * i,  # the i-th retrain of the seed study (0: the run)
    "extra_configs": lambda s, i: s + 1000,   # early fusion's extra MLP configurations
}


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run is configured with, resolved once at its entry point
    (:func:`shared.run.start.start_run`) and passed down to every trainer.

    ``strategy``: the ``tf.distribute.Strategy`` every Keras model is built and trained under (None:
    the current one); ``replicas``: its replicas in sync. ``is_chief`` is False on non-chief workers
    of a multi-worker run: they train but write nothing lasting.
    """

    data_dir: Path
    models_dir: Path
    budget: Budget
    smoke: bool = False
    seed: int = SEED
    device: str = ""
    strategy: object = field(default=None, compare=False)
    replicas: int = 1
    is_chief: bool = True

    def seed_for(self, purpose: str, index: int = 0) -> int:
        """The seed of one use of randomness (:data:`SEED_OFFSETS`), derived from :attr:`seed`."""
        if purpose not in SEED_OFFSETS:
            raise ValueError(f"unknown seed purpose {purpose!r}; known: {sorted(SEED_OFFSETS)}")
        return int(SEED_OFFSETS[purpose](int(self.seed), int(index)))
