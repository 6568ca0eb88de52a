"""Several models per fold (`n_seeds`): each trained with its own seed, answered per model, averaged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_MODEL

from lpmlib.cv import FoldStore, MissingTrainingError, load_folds, run_cv
from lpmlib.performance import held_out_errors, lpm_versus_ridge, q0_per_fold, q0_summary
from lpmlib.questions.attribution import q3_master_regulators
from lpmlib.questions.fusion import q2_fusion_deletion
from lpmlib.questions.knockout import q1_gene_knockout
from lpmlib.questions.masking import q5_ptm_dependency, q6_storm_leader
from lpmlib.questions.resistance import q4_resistance_driver
from lpmlib.train import TrainSettings

SPREAD = "sd_between_seeds"


def answers(cohort, folds) -> dict[str, pd.DataFrame]:
    """Every table of every question, and Q0's."""
    tables = {}
    for answer in (
        q1_gene_knockout(folds, gene="ERG"),
        q2_fusion_deletion(folds, gene="ERG"),
        q3_master_regulators(folds, n_steps=8),
        q4_resistance_driver(folds),
        q5_ptm_dependency(folds),
        q6_storm_leader(folds),
    ):
        tables |= answer.tables
    errors = held_out_errors(folds)
    tables["q0_cv_summary"] = q0_summary(q0_per_fold(folds, errors))
    tables["q0_lpm_versus_ridge"] = lpm_versus_ridge(cohort, errors)
    return tables


def test_identical_models_per_fold_give_the_answers_of_one(small_sim, small_folds) -> None:
    """Two copies of each fold's model: every summary, comparison and verdict is that of one model, the
    per-model tables hold each model's rows, and the spread between seeds is zero."""
    cohort = small_sim.cohort
    twice = [model for fold in small_folds for model in (fold, dataclasses.replace(fold, training_seed=2))]
    one, two = answers(cohort, small_folds), answers(cohort, twice)
    for name, table in one.items():
        doubled = two[name]
        if "training_seed" in table.columns:  # per-model rows: each model's rows are the single model's
            assert len(doubled) == 2 * len(table), name
            second = doubled[doubled["training_seed"] == 2].assign(training_seed=1).reset_index(drop=True)
            pd.testing.assert_frame_equal(second, table.reset_index(drop=True), obj=name)
            continue
        if SPREAD in table.columns:
            assert table[SPREAD].isna().all(), name
            spread = doubled[SPREAD].to_numpy(dtype=float)
            assert np.all((spread == 0) | np.isnan(spread)) and (spread == 0).any(), name
            table, doubled = table.drop(columns=SPREAD), doubled.drop(columns=SPREAD)
        pd.testing.assert_frame_equal(doubled, table, obj=name)


SETTINGS = TrainSettings(epochs=3)


def test_each_model_of_a_fold_has_its_own_seed_and_checkpoint(small_sim, tmp_path: Path) -> None:
    cohort = small_sim.cohort
    one = run_cv(cohort, tmp_path / "one", SETTINGS, n_folds=3, log=None, **SMALL_MODEL)
    two = run_cv(cohort, tmp_path / "two", SETTINGS, n_folds=3, log=None, n_seeds=2, **SMALL_MODEL)
    assert [(f.fold, f.training_seed) for f in two] == [(k, s) for k in (1, 2, 3) for s in (1, 2)]
    assert FoldStore(tmp_path / "two", 3, 2).weights.is_file()
    for first, again in zip(one, two[::2]):  # a fold's first model is the model of a one-seed run
        assert np.array_equal(first.predictions["all"]["rna"], again.predictions["all"]["rna"])
    for first, second in zip(two[::2], two[1::2]):  # its second has its own seed (the anchor is closed-form)
        assert not np.allclose(first.predictions["deep:all"]["rna"], second.predictions["deep:all"]["rna"])
    loaded = load_folds(cohort, tmp_path / "two", n_folds=3, n_seeds=2)
    assert [(f.fold, f.training_seed) for f in loaded] == [(f.fold, f.training_seed) for f in two]
    assert all(
        np.array_equal(a.predictions["all"]["rna"], b.predictions["all"]["rna"]) for a, b in zip(two, loaded)
    )
    with pytest.raises(MissingTrainingError, match="n_seeds=3"):
        load_folds(cohort, tmp_path / "two", n_folds=3, n_seeds=3)
