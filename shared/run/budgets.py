"""Training budgets: every setting that differs between a full run and a smoke run.

A :class:`Budget` is assembled from the registry: each family declares its section
(``Family.sizes``) and :data:`RUN` holds the run-wide ones; ``cfg.budget.mlp.epochs`` reads the
``mlp`` section. ``full``: the reports (10,351 listings, 2-core CPU: deliverable 1 within
45 min, deliverable 2 within 30 min with a warm feature cache); ``small-set``: the
814-listing set; ``smoke``: CI and tests, every code path, numbers meaningless.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from shared.models import registry
from shared.models.spec import Sizes

#: The budgets by name (``--budget NAME``; recorded in metrics.json and in model provenance).
BUDGET_NAMES = ("full", "small-set", "smoke")


@dataclass(frozen=True)
class RunSizes:
    """The run-wide settings."""

    seeds: int                     # the seed study: seeds per model, the run's own included
    interval_difficulty_rows: int  # training rows (seeded sample) the interval width model sees
    importance_repeats: int        # shuffles per column of the permutation importance (reports)
    occlusion_photos: int          # validation photos of the occlusion-sensitivity map (reports)


RUN = Sizes(full=RunSizes(seeds=5, interval_difficulty_rows=2000, importance_repeats=3,
                          occlusion_photos=48),
            smoke=RunSizes(seeds=2, interval_difficulty_rows=64, importance_repeats=1,
                           occlusion_photos=4))


@dataclass(frozen=True, eq=True)
class Budget:
    """The sizes of one training run: ``sections`` maps "run" and each family's name to its
    settings (``budget.mlp.epochs``); epochs are upper bounds. ``name``: a :data:`BUDGET_NAMES`
    entry or "custom"."""

    name: str
    sections: Mapping[str, Any]

    def __getattr__(self, section: str):
        sections = self.__dict__.get("sections", {})
        if section in sections:
            return sections[section]
        raise AttributeError(f"the budget has no section {section!r}; sections: "
                             f"{', '.join(sections)}")

    def __hash__(self):
        return hash(self.fingerprint())

    def replace(self, **sections) -> Budget:
        """A "custom" copy with whole sections replaced, e.g.
        ``budget.replace(mlp=dataclasses.replace(budget.mlp, epochs=3))``."""
        unknown = set(sections) - set(self.sections)
        if unknown:
            raise ValueError(f"the budget has no section(s) {sorted(unknown)}")
        return Budget("custom", MappingProxyType({**self.sections, **sections}))

    def as_dict(self) -> dict:
        """``{section: {setting: value}}``, JSON-ready (recorded with the run)."""
        return {name: dataclasses.asdict(sizes) for name, sizes in sorted(self.sections.items())}

    def fingerprint(self) -> str:
        """16 hex digits identifying every value (a model trained under another budget is never
        taken for this run's)."""
        text = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def budget(name: str) -> Budget:
    """The budget called ``name`` (:data:`BUDGET_NAMES`), assembled from the registry."""
    if name not in BUDGET_NAMES:
        raise ValueError(f"unknown budget {name!r}; choose one of {', '.join(BUDGET_NAMES)}")
    sections = {"run": RUN.at(name)}
    sections.update({fam.name: fam.sizes.at(name) for fam in registry.families()
                     if fam.sizes is not None})
    return Budget(name, MappingProxyType(sections))


def budget_for(smoke: bool, name: str | None = None) -> Budget:
    """The budget called ``name``, else ``smoke`` for a smoke run and ``full`` otherwise."""
    return budget(name if name is not None else ("smoke" if smoke else "full"))
