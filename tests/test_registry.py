"""shared.models.registry and shared.run.budgets: every list of models, the training order and the
budgets come from the families' declarations, so a new family is one declaration (issue 30)."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from shared.cli import main
from shared.models import registry
from shared.models.bundle import ModelBundle
from shared.models.spec import Family, ModelSpec, Sizes, Trained
from shared.reporting.tables import summary_table
from shared.run.budgets import BUDGET_NAMES, budget, budget_for
from shared.run.start import prepare


class MedianRegressor:
    """A toy estimator of the toy family: the median training log price for every row. It is
    this test module's own class, so a saved toy model is loadable only because the family
    declares it as trusted."""

    def fit(self, X, y):
        self.median_ = float(np.median(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.median_)


@dataclass(frozen=True)
class ToySizes:
    rows: int


def _train_toy(run) -> Trained:
    rows = run.cfg.budget.toy.rows  # its own budget section
    model = MedianRegressor().fit(run.data.tabular["train"][:rows], run.data.y_log("train")[:rows])
    return Trained(ModelBundle("toy_median", ("tabular",), model, run.data.preprocessor,
                               deliverable="deliverable1", params={"rows": rows}), 0.0)


TOY = Family(
    name="toy",
    models=(ModelSpec("toy_median", "baseline", "deliverable1", order=99, inputs=("tabular",),
                      train=_train_toy, description="the median training price"),),
    sizes=Sizes(full=ToySizes(rows=10_000), smoke=ToySizes(rows=20)),
    trusted_types=(MedianRegressor,),
)


def test_a_family_declared_in_a_test_is_trained_saved_predicted_and_listed(small_dir, tmp_path,
                                                                            isolated_cache, capsys):
    with registry.registered(TOY):
        assert "toy_median" in registry.names(deliverable="deliverable1", role="baseline")
        assert budget_for(True).toy == ToySizes(rows=20)  # its budget section, from its module
        exp = prepare(small_dir, tmp_path / "models", smoke=True)
        exp.train(["toy_median"])
        folder = tmp_path / "models" / "toy_median"
        assert (folder / "metadata.json").is_file() and "toy_median" in exp.results
        assert "toy_median" in summary_table(exp.results).index
        status = main(["predict", "--model", str(folder), "--data-dir", str(small_dir),
                       "--out", str(tmp_path / "toy.csv"), "--coverage", "0.5"])  # 3 cal rows
        assert status == 0, capsys.readouterr().err
        table = pd.read_csv(tmp_path / "toy.csv")
        assert len(table) == 40 and table["predicted_price"].nunique() == 1
        assert (table["price_low"] <= table["predicted_price"]).all()
    assert "toy_median" not in registry.names()  # gone with the block
    with pytest.raises(KeyError, match="no model family 'toy'"):
        registry.family("toy")


def test_the_lists_of_models_come_from_the_declarations():
    assert registry.names(deliverable="deliverable1", role="tabular") == (
        "ridge", "hgb", "mlp", "tabular_net")
    assert registry.names(deliverable="deliverable1", role="tabular", neural=True) == (
        "mlp", "tabular_net")
    assert registry.names(deliverable="deliverable1", role="photo") == (
        "cnn_scratch", "transfer_frozen", "transfer_finetuned")
    assert registry.names(deliverable="deliverable2", role="fusion") == (
        "early_fusion", "hgb_with_embeddings", "late_fusion", "late_fusion_from_branches", "blend")
    every = registry.names()
    assert every.index("transfer_frozen") < every.index("transfer_finetuned")
    assert all(every.index(needed) < every.index(spec.name)
               for spec in registry.specs() for needed in spec.after)
    assert {f.name for f in registry.families()} == set(registry.family_modules())


def test_a_family_is_imported_only_when_asked_and_only_by_its_module_name():
    with pytest.raises(KeyError, match="no model family 'os'"):
        registry.family("os")  # never an import of an arbitrary module
    assert registry.family("baselines").models[0].name == "mean"


def test_a_family_whose_names_clash_is_refused():
    clash = dataclasses.replace(TOY, name="toy2", models=(dataclasses.replace(
        TOY.models[0], name="hgb"),))
    with pytest.raises(ValueError, match="clashes"), registry.registered(clash):
        pass


def test_a_model_declared_before_one_it_needs_is_refused():
    early = dataclasses.replace(TOY.models[0], name="too_early", order=1, after=("toy_median",))
    with registry.registered(dataclasses.replace(TOY, models=(TOY.models[0], early))), \
            pytest.raises(ValueError, match="needs"):
        registry.names()


def test_budgets_are_assembled_from_every_family_section():
    full, small, smoke = (budget(name) for name in BUDGET_NAMES)
    sections = {f.name for f in registry.families() if f.sizes is not None} | {"run"}
    assert set(full.sections) == set(smoke.sections) == sections
    assert smoke.mlp.epochs < full.mlp.epochs and smoke.run.seeds < full.run.seeds
    assert small.cnn_scratch.image_size > full.cnn_scratch.image_size  # the 814 set's photos
    assert small.transfer.image_size == full.transfer.image_size  # same cached features
    assert budget_for(False) == full and budget_for(True) == smoke
    with pytest.raises(ValueError, match="unknown budget"):
        budget("huge")


def test_a_budget_change_changes_the_fingerprint_and_the_name():
    full = budget("full")
    custom = full.replace(mlp=dataclasses.replace(full.mlp, epochs=full.mlp.epochs + 1))
    assert custom.name == "custom" and custom.fingerprint() != full.fingerprint()
    assert budget("full").fingerprint() == full.fingerprint()  # assembled the same every time
    with pytest.raises(AttributeError, match="no section"):
        _ = full.nothing
    with pytest.raises(ValueError, match="no section"):
        full.replace(nothing=1)


def test_grids_sliced_by_the_full_budget_are_whole():
    from shared.models.families.baselines import HGB_SPACE, hgb_candidates
    from shared.models.families.late_fusion import PHOTO_GRID

    full, smoke = budget("full"), budget("smoke")
    drawn = hgb_candidates(full.baselines.hgb_candidates, 42)
    assert len({tuple(sorted(p.items())) for p in drawn}) == full.baselines.hgb_candidates
    assert all(p[k] in HGB_SPACE[k] for p in drawn for k in HGB_SPACE)
    assert drawn == hgb_candidates(full.baselines.hgb_candidates, 42)  # seeded
    assert PHOTO_GRID[:full.late_fusion.grid_size] == PHOTO_GRID
    assert len(hgb_candidates(smoke.baselines.hgb_candidates, 42)) == 2
    assert len(PHOTO_GRID[:smoke.late_fusion.grid_size]) == 1


def test_loading_a_saved_model_imports_only_its_family(tmp_path):
    """Loading a gradient boosting model never imports the Keras families (nor TensorFlow)."""
    import subprocess

    code = ("import sys; from shared.models import registry; registry.family('baselines'); "
            "print(sorted(m for m in sys.modules if m.startswith('shared.models.families.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['shared.models.families.baselines']"
