"""The blend (shared.models.families.blend) and the stacked photo score (out-of-fold only)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.models.families.blend import WEIGHTS, blend_log, blend_predictor, choose_blend
from shared.models.families.early_fusion import PhotoPriceScore


def _two_models(rng, n=400):
    """True log prices and two models whose errors are independent, the second twice as noisy."""
    y = rng.normal(4.0, 0.5, n)
    return y, y + rng.normal(0, 0.1, n), y + rng.normal(0, 0.2, n)


def test_weight_is_chosen_on_validation_and_near_the_optimum():
    rng = np.random.default_rng(0)
    y, a, b = _two_models(rng, 4000)
    choice = choose_blend({"tab": a, "photo": b}, np.exp(y), [("tab", "photo")])
    # Independent errors with sd 0.1 and 0.2: the variance-optimal weight of the second is 0.2.
    assert choice["members"] == ["tab", "photo"]
    assert 0.1 <= choice["weight"] <= 0.3
    single = np.mean(np.abs(np.exp(a) - np.exp(y)))
    assert choice["val_mae"] < single


def test_the_pair_validation_prefers_wins_and_every_pair_is_recorded():
    rng = np.random.default_rng(1)
    y, a, b = _two_models(rng)
    useless = y + rng.normal(0, 2.0, len(y))
    choice = choose_blend({"tab": a, "good": b, "noise": useless}, np.exp(y),
                          [("tab", "noise"), ("tab", "good")])
    assert choice["members"] == ["tab", "good"]
    assert [t["members"] for t in choice["trials"]] == [["tab", "noise"], ["tab", "good"]]
    noise_trial = choice["trials"][0]
    assert noise_trial["weight"] <= 0.1  # a pure-noise member gets (almost) no weight


def test_a_member_that_adds_nothing_gets_weight_zero():
    rng = np.random.default_rng(2)
    y = rng.normal(4.0, 0.5, 300)
    same = y + rng.normal(0, 0.1, 300)
    choice = choose_blend({"a": same, "b": same.copy()}, np.exp(y), [("a", "b")])
    assert choice["weight"] == 0.0  # ties go to the smaller weight


def test_test_rows_change_nothing_the_choice_only_sees_validation():
    rng = np.random.default_rng(3)
    y, a, b = _two_models(rng)
    members_val = {"tab": a, "photo": b}
    choice = choose_blend(members_val, np.exp(y), [("tab", "photo")])
    # Predictions on another part (say test) come from the fixed choice, whatever they are.
    test = {"tab": lambda part: np.full(5, 50.0), "photo": lambda part: np.full(5, 200.0)}
    predict = blend_predictor(test, choice)
    w = choice["weight"]
    np.testing.assert_allclose(predict("test"), np.exp((1 - w) * np.log(50.0) + w * np.log(200.0)))


def test_blend_log_rejects_bad_weights_and_shapes():
    with pytest.raises(ValueError, match="within"):
        blend_log(np.zeros(3), np.zeros(3), 1.5)
    with pytest.raises(ValueError, match="rows"):
        blend_log(np.zeros(3), np.zeros(4), 0.5)
    assert WEIGHTS[0] == 0.0 and WEIGHTS[-1] == 1.0


def test_stacked_photo_score_is_out_of_fold_on_training_rows():
    """Changing one training row's target must not change that row's own stacked score: each
    training row is scored by a ridge fitted without it (the alpha is fixed here, so nothing
    else depends on that target)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 6))
    y = X @ rng.normal(size=6) + rng.normal(0, 0.1, 120)
    first = PhotoPriceScore(alphas=[1.0, 1.0], n_folds=5, seed=0).fit(X, y)
    y2 = y.copy()
    y2[7] += 50.0
    second = PhotoPriceScore(alphas=[1.0, 1.0], n_folds=5, seed=0).fit(X, y2)
    # Scores are standardised by the out-of-fold mean/sd, which do depend on y: undo that.
    raw1 = first.oof_[:, 0] * first.scale_ + first.center_
    raw2 = second.oof_[:, 0] * second.scale_ + second.center_
    assert raw1[7] == pytest.approx(raw2[7], abs=1e-5)  # float32 scores
    assert not np.allclose(raw1, raw2)  # other folds did see the change


def test_cross_validated_mae_is_not_flattered_by_the_choice():
    """Pure-noise photo members: the best of them on the whole validation part looks better than
    the tabular member alone by luck; chosen on other folds and scored on the held-out one, it
    does not."""
    from shared.models.families.blend import cross_validated_mae

    rng = np.random.default_rng(4)
    y = rng.normal(4.0, 0.5, 200)
    val_log = {"tab": y + rng.normal(0, 0.3, 200),
               **{f"noise{i}": rng.normal(4.0, 0.5, 200) for i in range(10)}}
    pairs = [("tab", f"noise{i}") for i in range(10)]
    in_sample = choose_blend(val_log, np.exp(y), pairs)
    cv = cross_validated_mae(val_log, np.exp(y), pairs, seed=0)
    tab_alone = np.mean(np.abs(np.exp(val_log["tab"]) - np.exp(y)))
    assert in_sample["val_mae"] < tab_alone          # the in-sample choice is flattered
    assert cv["mae"] > in_sample["val_mae"]          # the out-of-fold score is not
    assert cv["folds"] == 5 and len(cv["choices"]) == 5


def test_cross_validated_mae_of_two_identical_members_is_the_members_mae():
    from shared.models.families.blend import cross_validated_mae

    rng = np.random.default_rng(5)
    y = rng.normal(4.0, 0.5, 100)
    tab = y + rng.normal(0, 0.1, 100)
    cv = cross_validated_mae({"tab": tab, "same": tab.copy()}, np.exp(y), [("tab", "same")])
    # any weight gives the same prediction (up to rounding), so every fold scores the member
    assert cv["mae"] == pytest.approx(np.mean(np.abs(np.exp(tab) - np.exp(y))))
    with pytest.raises(ValueError, match="folds"):
        cross_validated_mae({"tab": tab, "same": tab}, np.exp(y), [("tab", "same")], folds=1)


def test_fusion_selection_uses_the_blends_cross_validated_score():
    from deliverable2.ablation import chosen_fusion, selection_mae

    class Exp:
        results = {"hgb_with_embeddings": {"val": {"mae": 13.0}, "params": {}},
                   "blend": {"val": {"mae": 12.5}, "params": {"selection_val_mae": 13.2}}}

    assert selection_mae(Exp.results["blend"]) == 13.2
    assert chosen_fusion(Exp(), ("hgb_with_embeddings", "blend")) == "hgb_with_embeddings"
    Exp.results["blend"]["params"]["selection_val_mae"] = 12.9
    assert chosen_fusion(Exp(), ("hgb_with_embeddings", "blend")) == "blend"
