"""How much a random split overstates the scores, measured once per deliverable-1 run.

The reported models are trained and tested on the host-grouped split (:mod:`shared.data.split`): no
host and no identical photo in two parts. Here ``hgb`` and the photo model on cached features
(``transfer_frozen``) are trained again, the same way, on a random split of the same sizes
(:func:`shared.data.split.make_random_split`), and tested on its test part. The difference is what a
random split would have added to the reported scores: siblings of the same host, and the very
same photos, on both sides.
"""

from __future__ import annotations

import logging

from shared.data.split import make_random_split
from shared.evaluation.metrics import mae
from shared.features.model_data import data_for_split
from shared.models import registry
from shared.run.experiment import Experiment

log = logging.getLogger(__name__)

#: The models trained again on the random split: gradient boosting and the photo model on cached
#: features (both cheap).
MODELS = ("hgb", "transfer_frozen")


def split_sensitivity(exp) -> dict:
    """``{"models": {model: {"grouped_test_mae", "random_test_mae", "difference_eur",
    "relative"}}, "random_split": {"test_listings_beside_their_host_in_training"}}`` (EUR;
    relative = random / grouped - 1). The grouped figures are the run's own results; the random
    split's models are trained in a run of their own and nothing of it is saved."""
    random = Experiment(data_for_split(exp.data.dataset,
                                       make_random_split(exp.data.dataset, exp.cfg.seed_for("run"))),
                        exp.cfg)
    rows = {}
    for name in MODELS:
        trained = registry.spec(name).train(random)
        random_mae = mae(random.data.y_eur("test"), trained.prices("test", random.data))
        grouped_mae = exp.results[name]["test"]["mae"]
        rows[name] = {"grouped_test_mae": grouped_mae, "random_test_mae": random_mae,
                      "difference_eur": random_mae - grouped_mae,
                      "relative": random_mae / grouped_mae - 1}
        log.info("split sensitivity, %s: test MAE grouped %.2f, random %.2f EUR", name,
                 grouped_mae, random_mae)
    return {"models": rows, "random_split": {
        "test_listings_beside_their_host_in_training": _host_overlap(random.data)}}


def _host_overlap(data) -> int | None:
    """Test listings whose host has a listing in the training part (None without Host IDs)."""
    column = "Host ID"
    if column not in data.parts["train"].frame:
        return None
    hosts = set(data.parts["train"].frame[column].dropna().astype(str))
    return int(data.parts["test"].frame[column].astype(str).isin(hosts).sum())
