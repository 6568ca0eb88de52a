"""Q0 scoring and the cross-fold statistics behind every summary table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lpmlib.cv import FoldResult, fold_splits
from lpmlib.performance import q0_per_fold, q0_summary, r2_table
from lpmlib.simulate import SimulationConfig, simulate_cohort
from lpmlib.stats import mean_interval, summarise_folds
from lpmlib.tensors import LayerScaler


def test_mean_interval_is_the_t_interval() -> None:
    mean, low, high = mean_interval([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5)  # t(0.975, df=4)
    assert mean == 3 and low == pytest.approx(3 - half) and high == pytest.approx(3 + half)


def test_mean_interval_ignores_nan_folds_and_needs_two_values() -> None:
    assert mean_interval([1.0, np.nan, 3.0])[0] == 2.0
    mean, low, high = mean_interval([4.0, np.nan])
    assert mean == 4.0 and np.isnan(low) and np.isnan(high)
    assert all(np.isnan(v) for v in mean_interval([np.nan]))


def test_summarise_folds_keeps_the_per_fold_values_in_fold_order() -> None:
    per_fold = pd.DataFrame({"method": "m", "layer": "x", "fold": [2, 1, 3], "value": [0.2, 0.1, np.nan]})
    row = summarise_folds(per_fold, by=["method", "layer"]).iloc[0]
    assert row["per_fold"] == "0.1;0.2;nan" and row["n_folds"] == 2 and row["mean"] == pytest.approx(0.15)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(SimulationConfig(n_patients=60, n_components=8)).cohort


def oracle_folds(cohort, n_folds: int = 3) -> list[FoldResult]:
    """Folds whose 'predictions' are the true held-out values: the LPM rows must score exactly 1."""
    folds = []
    for k, (train, test) in enumerate(fold_splits(cohort.n_patients, n_folds, seed=0), start=1):
        truth = {n: layer.values.to_numpy()[test] for n, layer in cohort.layers.items()}
        patterns = ["all", "genomics_only"] + [f"without_{p}" for p in cohort.ptm_names]
        patterns += [f"deep:{p}" for p in patterns]
        folds.append(
            FoldResult(
                k,
                None,
                LayerScaler.fit(cohort, train),
                train,
                test,
                pd.DataFrame(),
                {p: truth for p in patterns},
                cohort=cohort,
            )
        )
    return folds


def test_q0_scores_perfect_predictions_as_one_and_ridge_below(cohort) -> None:
    per_fold = q0_per_fold(oracle_folds(cohort))
    assert len(per_fold) == 3 * len(cohort.layers) * 8 * 2
    lpm = per_fold[per_fold["method"].str.startswith(("lpm", "deep"))]
    assert np.allclose(lpm["value"], 1.0)
    ridge = per_fold[per_fold["method"].str.startswith(("ridge", "reduced_rank_ridge"))]
    assert (ridge["value"] < 1).all()
    assert set(per_fold["n_patients"]) == {20}


def test_q0_summary_adds_the_noise_ceiling_only_for_simulated_cohorts(cohort) -> None:
    per_fold = q0_per_fold(oracle_folds(cohort))
    truth = pd.DataFrame({"noise_ceiling": 0.5}, index=pd.Index(list(cohort.layers), name="layer"))
    assert "noise_ceiling" not in set(q0_summary(per_fold)["method"])
    table = r2_table(q0_summary(per_fold, truth))
    assert list(table.index) == cohort.target_names + cohort.ptm_names
    assert (table["noise_ceiling"] == 0.5).all() and (table["lpm_all"] == 1.0).all()
