"""How much a random split overstates the scores, measured once per deliverable-1 run.

The reported models are trained and tested on the host-grouped split (:mod:`shared.split`): no
host and no identical photo in two parts. Here ``hgb`` and the photo model on cached features
(``transfer_frozen``) are trained again, the same way, on a random split of the same sizes
(:func:`shared.split.make_random_split`), and tested on its test part. The difference is what a
random split would have added to the reported scores: siblings of the same host, and the very
same photos, on both sides.
"""

from __future__ import annotations

from shared.data import data_for_split
from shared.evaluation import mae
from shared.models import baselines, transfer
from shared.split import make_random_split

MODELS = {"hgb": baselines.train_hgb, "transfer_frozen": transfer.train_transfer_frozen}


def split_sensitivity(exp, log=print) -> dict:
    """{model: {"grouped_test_mae", "random_test_mae", "difference_eur", "relative"}, "random":
    {"test_listings_with_host_in_train"}} (EUR; relative = random / grouped - 1). The grouped
    figures are the run's own results; nothing of the random split is saved."""
    data, cfg = exp.data, exp.cfg
    random = data_for_split(data.dataset, make_random_split(data.dataset, cfg.seed))
    rows = {}
    for name, trainer in MODELS.items():
        trained = trainer(random, cfg)
        predict = trained.predict or (lambda part, b=trained.bundle: b.predict_eur(random.parts[part]))
        random_mae = mae(random.y_eur("test"), predict("test"))
        grouped_mae = exp.results[name]["test"]["mae"]
        rows[name] = {"grouped_test_mae": grouped_mae, "random_test_mae": random_mae,
                      "difference_eur": random_mae - grouped_mae,
                      "relative": random_mae / grouped_mae - 1}
        log(f"split sensitivity, {name}: test MAE grouped {grouped_mae:.2f}, random "
            f"{random_mae:.2f} EUR")
    return {"models": rows, "random_split": {
        "test_listings_beside_their_host_in_training": _host_overlap(random)}}


def _host_overlap(data) -> int | None:
    """Test listings whose host has a listing in the training part (None without Host IDs)."""
    column = "Host ID"
    if column not in data.parts["train"].frame:
        return None
    hosts = set(data.parts["train"].frame[column].dropna().astype(str))
    return int(data.parts["test"].frame[column].astype(str).isin(hosts).sum())
