"""The deliverable-1 models deliverable 2 compares against (and builds on): reused, or trained.

Deliverable 2 needs, on the same split and the same usable rows, the deliverable-1 models the
registry declares as references (``ModelSpec.reference``):

* the tabular-only references (``hgb``, ``mlp``, ``tabular_net``);
* the photo-only references: of which the best *on validation* is the photo-only reference;
  the better transfer model on validation is also the image branch of
  ``late_fusion_from_branches``.

A saved model is reused only when it loads and was trained on this split of this data under this
budget: its metadata (``trained_on``) must equal this run's provenance
(:func:`shared.run.records.provenance`: split fingerprint, seed and parts, the sha256 of
``listings.csv``, feature set, budget). A model saved without them, on another split, another
version of the data or under another budget (a smoke run's) is trained again (``exp.origin``
says why), except a reference declared "if_saved" (``cnn_scratch``: far behind transfer learning
in deliverable 1 and minutes to train), which is then left out. The comparison does not depend
on file dates (which a copy or a checkout changes).
"""

from __future__ import annotations

import logging

from shared.models import registry
from shared.run.experiment import Experiment

log = logging.getLogger(__name__)


def reference_names() -> tuple[str, ...]:
    """Every deliverable-1 model deliverable 2 may compare with, in training order."""
    return tuple(s.name for s in registry.specs(deliverable="deliverable1") if s.reference)


def tabular_references() -> tuple[str, ...]:
    return tuple(s.name for s in registry.specs(deliverable="deliverable1", role="tabular")
                 if s.reference)


def photo_references() -> tuple[str, ...]:
    return tuple(s.name for s in registry.specs(deliverable="deliverable1", role="photo")
                 if s.reference)


def obtain(exp: Experiment) -> str:
    """Reuse or train every reference; evaluate the tabular ones and the photo-only reference
    (the photo model validation prefers) on this split; return the photo-only reference's name.
    The other photo models are not reported (their results, if trained here, are dropped)."""
    exp.reuse_or_train(reference_names())
    for name in reference_names():
        log.info("  %s: %s", name, exp.origin.get(name, "trained"))
    for name in tabular_references():
        if name not in exp.results:
            exp.evaluate_reused(name)
    best = exp.best_on_validation([n for n in photo_references() if exp.has(n)])
    for name in photo_references():
        if name != best:
            exp.forget(name)
        elif name not in exp.results:
            exp.evaluate_reused(name)
    return best
