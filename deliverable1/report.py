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
# **Data.** Madrid listings with their photo from the 2017-04-08 OpenDataSoft "airbnb-listings"
# export, up to a price cap (range printed below): every error here holds for that range only.
#
# Rendered by `nox -s deliverable1`: `deliverable1.train.run` trains every model and checks the
# goals; this notebook only displays what it returns.

# %% tags=["parameters"]
data_dir = None      # dataset directory (listings.csv + images/)
models_dir = "models"
output_dir = "docs/deliverable1"
smoke = False        # tiny settings for CI: numbers are then meaningless

# %%
from shared.reporting import quiet_notebook

quiet_notebook()  # TensorFlow's start-up lines and library warnings are noise in a report

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from deliverable1 import analysis, train
from shared.models import cnn_scratch, mlp, transfer
from shared import evaluation, features, intervals, split

pd.set_option("display.width", 160)
result = train.run(data_dir, models_dir, smoke=smoke, output_dir=output_dir)
exp, bundles, budget = result.exp, result.bundles, result.exp.cfg.budget
n = {part: len(exp.data.parts[part].frame) for part in split.PART_NAMES}
print(f"device: {exp.cfg.device}; smoke run: {smoke}")

# %% [markdown]
# ## 1. Data and the one split every model shares
#
# Loading keeps the usable listings: a unique integer `ID`, a parseable price (rows without one are
# dropped, **never imputed**), a Madrid address, a photo that fully decodes. All models of both
# deliverables train on the same rows ([methodology: data](../methodology.html#data)).

# %%
display(Markdown(
    f"The split is {' / '.join(f'{v:.0%}' for v in split.FRACTIONS.values())} (train / validation "
    f"/ calibration / test), **grouped by host and identical photo** (no host and no photo in "
    f"two parts: the test listings are new hosts' listings), stratified on {split.PRICE_BINS} "
    f"price bins, seed {exp.cfg.seed}; published as `split.json` beside this report. Validation "
    "chooses; the calibration part only calibrates the price ranges (section 9); **test is "
    "looked at once**. What a random split of the same sizes would have reported instead:"))
sens = result.analysis["split_sensitivity"]
display(pd.DataFrame(sens["models"]).T.round(3))
print("random split: test listings with a sibling of the same host in training:",
      sens["random_split"]["test_listings_beside_their_host_in_training"])
summary = exp.data.dataset.summary()
display(pd.Series({
    "rows read": summary["rows_read"], "rows usable": summary["rows_usable"],
    "dropped": sum(summary["drops"].values()),
    "price range (EUR)": f"{summary['price_eur']['min']:.0f} - {summary['price_eur']['max']:.0f}",
    "median price (EUR)": summary["price_eur"]["median"],
    "train / val / cal / test": " / ".join(map(str, n.values())),
    "listings.csv sha256": summary["listings_sha256"],
}, name="dataset").to_frame())
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for part in n:
    axes[0].hist(exp.data.y_eur(part), bins=30, alpha=0.5, density=True, label=part)
    axes[1].hist(np.log(exp.data.y_eur(part)), bins=30, alpha=0.5, density=True, label=part)
axes[0].set(title="nightly price (EUR)", xlabel="EUR")
axes[1].set(title="log price: the training target", xlabel="log(EUR)")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The price is right-skewed, its logarithm nearly symmetric: every model learns **log price**
# (errors become relative); metrics are in **euros**, plus R² on log price.
#
# ## 2. Features
#
# Row-wise features from the columns present, then one pipeline **fitted on the training rows
# only** (imputation, scaling, one-hot; [methodology: features](../methodology.html#features)).
# **Never inputs:** `Price`, `Weekly Price`, `Monthly Price` (derived from the target), IDs, URLs.

# %%
names = list(exp.data.preprocessor.get_feature_names_out())
onehot = exp.data.preprocessor.named_steps["columns"].named_transformers_["categorical"].named_steps["onehot"]
print(f"{len(names)} model inputs after preprocessing ({len(features.NUMERIC)} numeric + indicators, "
      f"{len(features.CATEGORICAL)} categoricals one-hot, levels seen in fewer than "
      f"{onehot.min_frequency} training rows grouped)")
print("price-derived or ID inputs:", [c for c in names if any(
    c.split("__", 1)[-1].startswith(bad) for bad in features.FORBIDDEN_INPUTS)] or "none")
engineered = features.engineer_features(exp.data.parts["train"].frame)
print("engineered features not built (their source columns are absent):",
      ", ".join(c for c in features.ENGINEERED_COLUMNS if c not in engineered) or "none")
display(engineered[[c for c in features.ENGINEERED_NUMERIC if c in engineered][:8]]
        .describe().T.round(2))

# %% [markdown]
# ### What the missing columns cost
#
# The set the reports are rendered on lacks some columns (free text, amenities, review dates). `hgb`
# is fitted with and without them on a set that has them all: the gap is what they are worth
# (compare section 8; [methodology: column cost](../methodology.html#column-cost)).

# %%
cost = result.analysis["column_cost"]
if "skipped" in cost:
    display(Markdown(f"Column cost not computed: {cost['skipped']}."))
else:
    print(f"on {cost['dataset']} ({cost['listings']} listings; split "
          + " / ".join(f"{k} {v}" for k, v in cost["split"].items()) + ")")
    display(pd.DataFrame.from_dict(cost["rows"], orient="index").round(3))

# %% [markdown]
# ## 3. Baselines: the yardsticks
#
# `mean` predicts the training mean log price (the error to beat); `ridge` (linear, L2) and `hgb`
# (gradient boosting, usually the model to beat on tabular data) are tuned on validation.

# %%
for name in ("mean", "ridge", "hgb"):
    print(f"{name:6s} validation MAE {exp.results[name]['val']['mae']:.2f} EUR")

# %% [markdown]
# ## 4. Tabular networks: `mlp` and `tabular_net`
#
# `mlp`: dense -> batch norm -> ReLU -> dropout layers, a seeded random search from the original's
# configuration ([methodology: MLP](../methodology.html#mlp)). `tabular_net`: each numeric feature
# embedded by periodic functions -> linear -> ReLU (PLR, Gorishniy et al. 2022), and an ensemble of
# members sharing one MLP, each with its own input scaling (TabM, Gorishniy et al. 2025). Both
# stop early on validation; validation picks the network the goal is judged on.

# %%
print(f"starting point (the original's): {mlp.ORIGINAL}; {budget.mlp_configs} candidates, "
      f"at most {budget.mlp_epochs} epochs each")
display(pd.DataFrame(bundles["mlp"].params["trials"]).sort_values("val_mae"))
print("chosen:", mlp.config_of(bundles["mlp"].params))
display(pd.DataFrame(bundles["tabular_net"].params["trials"]).sort_values("val_mae"))

# %% [markdown]
# ## 5. `cnn_scratch`: a CNN trained from scratch on the photo alone
#
# A deliberately small CNN on augmented photos, its output bias at the mean log price so that,
# unlike the original's, a model with nothing to learn stays at the mean rather than below it
# ([methodology: CNN from scratch](../methodology.html#cnn-from-scratch)).

# %%
print(f"{n['train']} training photos at {budget.cnn_image_size} px; channels "
      f"{'-'.join(map(str, cnn_scratch.CHANNELS))}")
print(bundles["cnn_scratch"].params)

# %% [markdown]
# ## 6. Transfer learning: `transfer_frozen` and `transfer_finetuned`
#
# Backbone: **EfficientNet-Lite0**, ImageNet-pretrained. `transfer_frozen` caches each photo's
# backbone features and fits a **linear probe** (a linear model on frozen features: ridge, penalty
# chosen on validation); `transfer_finetuned` also trains the top backbone blocks at a low rate,
# batch norm frozen ([methodology: transfer learning](../methodology.html#transfer-learning)).

# %%
stats = result.extraction
print(f"backbone features: {stats['computed']} computed, {stats['cached']} from the cache "
      f"({stats['seconds']:.1f} s); {len(transfer.HEAD_ALPHAS)} ridge penalties")
display(pd.DataFrame(bundles["transfer_frozen"].params["trials"]).sort_values("val_mae"))
print(bundles["transfer_finetuned"].params)

# %% [markdown]
# ## 7. Learning curves
#
# Training and validation loss (MSE on log price) per epoch. Each curve ends where training stopped
# (early stopping or the epoch cap); the weights kept are the best validation epoch's.

# %%
evaluation.plot_learning_curves(exp.histories)
plt.show()

# %% [markdown]
# ## 8. Results on the test set
#
# MAE / RMSE in EUR, MAPE / median APE in %, R² on log price; brackets: 95% bootstrap intervals over
# the test listings. These are the first and only test-set numbers.

# %%
print(f"bootstrap: {evaluation.N_BOOTSTRAP} resamples of the {n['test']} test listings")
display(evaluation.metrics_table(exp.results, "test"))
display(pd.DataFrame({m: {"val MAE": round(r["val"]["mae"], 2), "val R² log": round(r["val"]["r2_log"], 3)}
                      for m, r in exp.results.items()}).T)
evaluation.plot_mae_with_intervals(exp.results)
plt.show()
print("Seed study (test MAE, EUR): the reported run and the same settings retrained with "
      "other seeds (initialisation, shuffling, subsampling) on the same split")
display(evaluation.seed_table(exp.results))
display(evaluation.training_table(exp.results))

# %%
y_test = exp.data.y_eur("test")
evaluation.plot_predicted_vs_actual({m: p["test"] for m, p in exp.predictions.items()}, y_test, ncols=4)
plt.show()
evaluation.plot_residuals_by_group(
    {m: exp.predictions[m]["test"] for m in ("hgb", "mlp", "transfer_frozen")}, y_test,
    exp.data.parts["test"].frame["Room Type"].to_numpy(), "Absolute error by room type (test)")
plt.show()

# %% [markdown]
# ## 9. How sure is a prediction? Calibrated price ranges
#
# Every saved model also gives a price **range** (`airbnb-dl predict --coverage 0.8`) by *split
# conformal prediction*: errors on held-out rows set the width so that a nominal 80% range covers at
# least 80% of new listings, whatever the model. Range `exp(ŷ ± q·σ(x))`, `σ(x)` the listing's
# difficulty, `q` a quantile of errors on the **calibration** part, which chooses nothing
# ([methodology](../methodology.html#prediction-intervals)).

# %%
reports = {m: r["intervals"]["test"] for m, r in exp.results.items() if m != "mean"}
print(f"calibration: {next(iter(exp.results.values()))['intervals']['calibration_rows']} calibration-part "
      f"rows; method: {next(iter(exp.results.values()))['intervals']['method']}")
display(intervals.interval_table(reports))
intervals.plot_coverage_by_group({m: rep["0.8"] for m, rep in reports.items()},
                                 title="Test coverage of the 80% range by room type and price band")
plt.show()
display(Markdown(result.analysis["intervals"]["sentence"] + "\n\n"
                 + result.analysis["intervals"]["calibration_check"]))

# %% [markdown]
# ## 10. Goals, checked
#
# Thresholds: `deliverable1.analysis.GOALS`. The transfer goal is judged on the transfer model with
# the lower **validation** MAE: picking the better test score would be a selection on the test set.

# %%
print("thresholds:", analysis.GOALS)
print("transfer model chosen on validation:", result.analysis["best_transfer_on_validation"])
display(pd.DataFrame(result.analysis["goals"]))
if smoke:
    display(Markdown("**Smoke run**: tiny settings; these numbers say nothing about the models."))

# %% [markdown]
# ## 11. Decisions, and what the original got wrong
#
# The original used price-derived inputs, imputed missing prices, fitted preprocessing on the test
# set, held every photo in memory and re-split per experiment; its from-scratch CNN scored below the
# mean predictor. Each is addressed here ([methodology](../methodology.html#differences-from-the-original)).
#
# ## 12. Conclusions (computed)

# %%
display(Markdown("\n".join(result.analysis["conclusions"])))
