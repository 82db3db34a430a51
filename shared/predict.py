"""``airbnb-dl predict``: score a dataset directory with any saved model of either deliverable.

Loads ``models/<name>/`` (model + fitted preprocessing, never retrained), keeps the listings of the
directory that can be scored (valid ID, in Madrid, decodable photo; a Price column is optional),
writes ``ID,predicted_price`` (euros) for them, lists the others on stderr with their reason, and
prints the metrics when the directory has prices. The dataset directory is only read.

Exit status: 0 every listing scored, 1 some listings skipped, 2 unusable input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from shared.dataset import load_dataset
from shared.evaluation import regression_metrics
from shared.io import atomic_path
from shared.modeling import ModelBundle


def predict_frame(bundle: ModelBundle, dataset) -> pd.DataFrame:
    """DataFrame with columns ID (int) and predicted_price (EUR, 2 decimals)."""
    prices = bundle.predict_eur(dataset)
    return pd.DataFrame({"ID": dataset.ids, "predicted_price": np.round(prices, 2)})


def predict_command(model_dir: Path, data_dir, out: Path) -> int:
    bundle = ModelBundle.load(model_dir)
    dataset = load_dataset(data_dir, require_price=False)
    skipped = sum(len(ids) for ids in dataset.drops.values())
    for reason, ids in sorted(dataset.drops.items()):
        for listing in ids:
            print(f"skipped {listing}: {reason}", file=sys.stderr)
    if len(dataset.frame) == 0:
        print(f"airbnb-dl: error: no listing in {dataset.data_dir} can be scored", file=sys.stderr)
        return 2
    result = predict_frame(bundle, dataset)
    out = Path(out).resolve()
    if dataset.data_dir in out.parents:
        print(f"airbnb-dl: error: {out} is inside the dataset directory, which is never written to",
              file=sys.stderr)
        return 2
    with atomic_path(out, suffix=".csv") as tmp:
        result.to_csv(tmp, index=False)
    print(f"{bundle.name}: wrote {len(result)} predictions to {out}"
          + (f" ({skipped} listing(s) skipped, see above)" if skipped else ""))
    priced = dataset.frame["price"].notna().to_numpy()
    if priced.any():
        metrics = regression_metrics(dataset.prices[priced], result["predicted_price"].to_numpy()[priced],
                                     bootstrap=False)
        print(f"metrics on the {int(priced.sum())} listings with a price: "
              + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return 1 if skipped else 0
