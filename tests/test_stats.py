"""The rule by which an answer names a winner: only where a test and the folds separate it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lpmlib.stats import gain_tests, separate_best, separation_sentence, summarise_folds, top_counts

N_FOLDS, N_PER_FOLD = 5, 30


def per_patient(effects: dict[str, float], seed: int = 0, noise: float = 1.0, fold_shift: dict | None = None):
    """Per-patient values of items measured on the same patients, and their per-fold means."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N_FOLDS, N_PER_FOLD))  # what every item shares on a patient
    rows = []
    for name, effect in effects.items():
        values = base + effect + noise * rng.normal(size=base.shape)
        for fold in range(N_FOLDS):
            shift = (fold_shift or {}).get((name, fold + 1), 0.0)
            rows += [
                {"item": name, "fold": fold + 1, "unit": u, "value": v + shift}
                for u, v in enumerate(values[fold])
            ]
    units = pd.DataFrame(rows)
    scores = units.groupby(["item", "fold"], as_index=False)["value"].mean()
    return scores, units


def test_a_clear_winner_is_named_with_its_interval_and_test() -> None:
    scores, units = per_patient({"a": 1.0, "b": 0.0, "c": -0.5})
    result = separate_best(scores, units, "item", paired=True)
    assert result.leader == "a" and result.tied == ["a"]
    assert result.table["item"].tolist() == ["a", "b", "c"]
    assert (result.table["p_adjusted"].iloc[1:] < 0.05).all() and result.table["separated"].iloc[1:].all()
    sentence = separation_sentence(result, "layer")
    assert sentence.startswith("a leads") and "[" in sentence and "Wilcoxon" in sentence


def test_two_copies_of_one_item_are_a_tie_and_no_leader_is_named() -> None:
    scores, units = per_patient({"a": 1.0, "c": 0.0})
    copy = units[units["item"] == "a"].assign(item="b")  # b is an exact copy of a
    units = pd.concat([units, copy], ignore_index=True)
    scores = units.groupby(["item", "fold"], as_index=False)["value"].mean()
    result = separate_best(scores, units, "item", paired=True)
    assert result.leader is None and set(result.tied) == {"a", "b"}
    sentence = separation_sentence(result, "layer")
    assert sentence.startswith("No single layer leads") and "cannot be separated from b. A paired" in sentence


def test_a_winner_ahead_in_only_three_of_five_folds_is_not_named() -> None:
    # a is far ahead of b in three folds and slightly behind in two: pooled, the test favours a
    shift = {("a", 4): -1.7, ("a", 5): -1.7}
    scores, units = per_patient({"a": 1.5, "b": 0.0}, noise=0.2, fold_shift=shift)
    result = separate_best(scores, units, "item", paired=True)
    row = result.table.set_index("item").loc["b"]
    assert row["n_folds_ahead"] == 3 and row["n_folds"] == 5 and row["p_adjusted"] < 0.05
    assert result.leader is None and result.tied == ["a", "b"]


def test_unpaired_items_on_different_patients_use_a_rank_test() -> None:
    scores, units = per_patient({"a": 1.5, "b": 0.0})
    units.loc[units["item"] == "b", "unit"] += 1000  # different patients: nothing to pair
    result = separate_best(scores, units, "item", paired=False)
    assert result.test == "Mann-Whitney U" and result.leader == "a"
    with np.errstate(all="ignore"):
        paired = separate_best(scores, units, "item", paired=True)
    assert np.isnan(paired.table["p_value"].iloc[1]) and paired.leader is None


def test_items_with_too_few_values_to_test_are_named_as_such() -> None:
    scores, units = per_patient({"a": 1.5, "b": 0.0, "rare": -1.0})
    rare = units[units["item"] == "rare"]
    units = pd.concat([units[units["item"] != "rare"], rare.iloc[:1]], ignore_index=True)  # one value
    scores = units.groupby(["item", "fold"], as_index=False)["value"].mean()
    result = separate_best(scores, units, "item", paired=False)
    assert result.leader is None and result.tied == ["a", "rare"]
    assert "cannot be separated from rare (too few values to test)" in separation_sentence(result, "driver")


def test_a_best_item_scored_in_one_fold_is_not_named() -> None:
    scores, units = per_patient({"a": 3.0, "b": 0.0})
    units = units[(units["item"] == "b") | (units["fold"] == 1)]  # a is measured in one fold only
    scores = units.groupby(["item", "fold"], as_index=False)["value"].mean()
    result = separate_best(scores, units, "item", paired=False)
    assert result.table["separated"].iloc[1] and result.leader is None
    assert separation_sentence(result, "driver").startswith("No driver can be named: a has the highest mean")


# ---------------------------------------------------------------------------------------------
# Several models per fold: answers averaged over a fold's models before any summary or test


def with_two_seeds(table: pd.DataFrame, offset: float) -> pd.DataFrame:
    """The table as the answers of two models per fold: seed 1 at value - offset, seed 2 at value + offset."""
    return pd.concat(
        [
            table.assign(training_seed=1, value=table["value"] - offset),
            table.assign(training_seed=2, value=table["value"] + offset),
        ],
        ignore_index=True,
    )


def test_a_folds_models_are_averaged_before_the_summary_and_the_test() -> None:
    scores, units = per_patient({"a": 1.0, "b": 0.0, "c": -0.5})
    single = separate_best(scores, units, "item", paired=True)
    averaged = separate_best(with_two_seeds(scores, 0.3), with_two_seeds(units, 0.3), "item", paired=True)
    pd.testing.assert_frame_equal(averaged.table, single.table)
    assert averaged.leader == single.leader == "a"
    one = summarise_folds(scores, by=["item"])
    two = summarise_folds(with_two_seeds(scores, 0.3), by=["item"])
    pd.testing.assert_frame_equal(two.drop(columns="sd_between_seeds"), one.drop(columns="sd_between_seeds"))
    assert one["sd_between_seeds"].isna().all()  # one model per fold: no spread between seeds
    assert np.allclose(two["sd_between_seeds"], np.sqrt(2 * 0.3**2))  # two values 0.6 apart: variance 0.18
    assert np.allclose(two["sd_between_folds"], scores.groupby("item", sort=False)["value"].std())


def test_gain_tests_count_each_patient_once_however_many_models() -> None:
    _, units = per_patient({"a": 0.4, "b": 0.0})
    one = gain_tests(units, ["item"])
    two = gain_tests(with_two_seeds(units, 0.1), ["item"])
    pd.testing.assert_frame_equal(one, two)


def test_top_counts_average_a_fold_s_models_and_skip_missing_scores() -> None:
    """Fold 1: b wins on the mean of its two models although a has the single best model; fold 2: a's
    score is missing, so b wins; fold 3: a wins. c never wins and is counted with zero."""
    scores = {
        1: {"a": (0.9, 0.1), "b": (0.6, 0.6), "c": (0.0, 0.0)},
        2: {"a": (np.nan, np.nan), "b": (0.2, 0.2), "c": (0.1, 0.1)},
        3: {"a": (0.5, 0.5), "b": (0.4, 0.4), "c": (0.3, 0.3)},
    }
    per_fold = pd.DataFrame(
        [
            {"fold": fold, "training_seed": seed, "layer": layer, "value": value}
            for fold, layers in scores.items()
            for layer, values in layers.items()
            for seed, value in enumerate(values, start=1)
        ]
    )
    assert top_counts(per_fold, "layer").to_dict() == {"a": 1, "b": 2, "c": 0}
