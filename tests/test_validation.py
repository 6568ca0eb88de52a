"""The validation targets and the sentence the abstract carries about them."""

from __future__ import annotations

import pandas as pd
import pytest

from lpmlib.validation import knockout_recovery, target_check, targets_sentence


def checked(auroc: float, spearman: dict[str, float], leader_folds: int) -> pd.DataFrame:
    rankings = pd.DataFrame({"ranking": ["q1_storm_intensity"], "auroc": [auroc]})
    effects = pd.DataFrame({"layer": list(spearman), "spearman": list(spearman.values())})
    leader = {"found": True, "n_folds_top": leader_folds, "n_folds": 5}
    return target_check(rankings, effects, leader, list(spearman))


def test_every_target_met_is_said_so() -> None:
    targets = checked(0.95, {"rna": 0.9, "protein": 0.85}, 5)
    assert targets["met"].all()
    expected = "Checked against the planted truth, 3 of 3 validation targets were met."
    assert targets_sentence(targets) == expected


def test_missed_targets_are_named_with_what_was_achieved() -> None:
    targets = checked(0.87, {"rna": 0.86, "protein": 0.54}, 4)
    assert targets["met"].tolist() == [False, False, False]
    sentence = targets_sentence(targets)
    assert sentence.startswith("Checked against the planted truth, 0 of 3 validation targets were met;")
    assert "(achieved: 0.87)" in sentence and "protein 0.54" in sentence and "4 of 5 folds" in sentence


def test_a_cohort_without_planted_truth_says_so() -> None:
    assert targets_sentence(None) == "The cohort has no planted truth, so no answer is checked against one."


def test_knockout_recovery_stands_beside_each_layers_genomics_ceiling() -> None:
    drivers = ["A", "B", "C", "D"]
    truth = pd.DataFrame({"layer": "rna", "driver": drivers, "effect_rms_pc": [0.1, 0.2, 0.3, 0.4]})
    estimated = pd.DataFrame(
        {"driver": drivers, "layer": "rna", "quantity": "shift_rms", "mean": [1, 3, 2, 4]}
    )
    ceilings = pd.DataFrame({"genomics_ceiling": [0.17]}, index=pd.Index(["rna"], name="layer"))
    table = knockout_recovery(estimated, truth, ceilings).set_index("layer")
    assert table.loc["rna", "spearman"] == pytest.approx(0.8) and table.loc["rna", "genomics_ceiling"] == 0.17
    assert "genomics_ceiling" not in knockout_recovery(estimated, truth).columns
