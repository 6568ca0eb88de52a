"""Q3 master regulators: integrated gradients are complete, and they find the one driver that matters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import folds_around, identity_scaler
from torch import nn

from lpmlib.cohort import Cohort, Layer
from lpmlib.model import LPMOutput
from lpmlib.perturb import held_out, ptm_mask, run_model
from lpmlib.questions.attribution import attribute_drivers, q3_master_regulators

PER_FOLD_COLUMNS = [
    "driver",
    "fold",
    "training_seed",
    "ig_mean_abs",
    "ig_mean_carriers",
    "saliency_mean",
    "n_patients",
    "n_carriers",
    "note",
]


def toy_cohort(n: int = 90, seed: int = 0) -> Cohort:
    """Four drivers (the last never altered), two PTM layers and a metabolome of random values."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"P{i:03d}" for i in range(n)], name="case_id")
    genome = (rng.random((n, 4)) < 0.4).astype(int)
    genome[:, 3] = 0
    drivers = pd.DataFrame(genome, index=ids, columns=["D0", "D1", "D2", "NEVER"])
    clinical = pd.DataFrame({"grade": rng.integers(0, 5, n)}, index=ids)
    columns = lambda name: [f"{name}_{j}" for j in range(3)]  # noqa: E731
    layers = {
        name: Layer(name, role, pd.DataFrame(rng.normal(size=(n, 3)), index=ids, columns=columns(name)))
        for name, role in (("metabolome", "target"), ("pA", "ptm"), ("pB", "ptm"))
    }
    return Cohort(clinical, drivers, layers)


class GenomeOnlyModule(nn.Module):
    """A module with the LPM's forward signature whose every output is a smooth function of drivers and grade.

    Each PTM prediction is sin(drivers @ weights + grade shift): with `weights` nonzero only in one row, that
    driver is the only one that matters.
    """

    def __init__(self, cohort: Cohort, weights: torch.Tensor) -> None:
        super().__init__()
        self.dims = {name: layer.n_features for name, layer in cohort.layers.items()}
        self.ptm_names = cohort.ptm_names
        self.register_buffer("weights", weights)  # (n_drivers, features)

    def forward(self, drivers, grade, ptms, ptm_mask) -> LPMOutput:
        shift = 0.3 * grade.to(drivers.dtype).unsqueeze(1)
        state = drivers @ self.weights + shift
        predictions = {
            name: torch.sin(state[:, :dim] * (k + 1)) for k, (name, dim) in enumerate(self.dims.items())
        }
        n = drivers.shape[0]
        return LPMOutput(predictions, state, state, {}, {}, state, state, torch.zeros(n, 1, 1))


def hand_built_folds(cohort: Cohort, weights: torch.Tensor) -> list:
    module = GenomeOnlyModule(cohort, weights)
    return [dataclasses.replace(f, scaler=identity_scaler(cohort)) for f in folds_around(module, cohort)]


def deviation_by_forward_passes(cohort: Cohort, fold) -> np.ndarray:
    """F(genome), computed without captum: two evaluation passes, back to standardised model units."""
    data = held_out(fold)
    n, names = len(data), cohort.ptm_names
    zeros = {p: torch.zeros(n, cohort.layers[p].n_features) for p in names}
    mask = ptm_mask(n, names)
    own = run_model(fold.model, fold.scaler, data.drivers, data.grade, zeros, mask)
    wild = run_model(fold.model, fold.scaler, torch.zeros_like(data.drivers), data.grade, zeros, mask)
    squared = [(fold.scaler.standardise(p, own[p]) - fold.scaler.standardise(p, wild[p])) ** 2 for p in names]
    return np.hstack(squared).mean(axis=1)


def assert_complete(cohort: Cohort, folds: list) -> None:
    for fold in folds:
        result = attribute_drivers(fold, n_steps=64)
        deviation = deviation_by_forward_passes(cohort, fold)
        assert deviation.max() > 0
        np.testing.assert_allclose(result.deviation, deviation, rtol=1e-4, atol=1e-9)
        # completeness: attributions sum to F(x) - F(wild type), and F(wild type) = 0
        tolerance = 1e-3 * deviation.max()
        np.testing.assert_allclose(result.integrated_gradients.sum(axis=1), deviation, rtol=0, atol=tolerance)
        assert np.abs(result.completeness_error).max() <= tolerance
        # a driver a patient does not carry equals the baseline: its attribution is exactly 0
        assert (result.integrated_gradients[~result.genome] == 0).all()


def test_integrated_gradients_are_complete_on_trained_folds(small_sim, small_folds) -> None:
    assert_complete(small_sim.cohort, small_folds)


def test_integrated_gradients_are_complete_for_a_nonlinear_module() -> None:
    cohort = toy_cohort()
    weights = torch.as_tensor(np.random.default_rng(1).normal(size=(4, 3)), dtype=torch.float32)
    assert_complete(cohort, hand_built_folds(cohort, weights))


@pytest.fixture(scope="module")
def driver_two_answer():
    """Q3 on a module whose PTM predictions depend on driver D2 (column 2) alone."""
    cohort = toy_cohort()
    weights = torch.zeros(4, 3)
    weights[2] = torch.tensor([1.0, -0.7, 0.4])
    return cohort, q3_master_regulators(hand_built_folds(cohort, weights), top_k=1)


def test_q3_ranks_the_only_influential_driver_first_in_every_fold(driver_two_answer) -> None:
    _, answer = driver_two_answer
    stability = answer["q3_rank_stability"].set_index("driver")
    assert stability.index[0] == "D2"
    assert stability.loc["D2", "fraction_top_k"] == 1.0 and stability.loc["D2", "mean_rank"] == 1.0
    assert (stability.drop(index="D2")["fraction_top_k"] == 0).all()
    verdict = answer["q3_verdict"].iloc[0]  # every other driver's attribution is exactly zero
    assert verdict["leader"] == "D2" and verdict["sentence"].startswith("D2 leads")


def test_q3_gives_every_other_driver_exactly_zero(driver_two_answer) -> None:
    _, answer = driver_two_answer
    per_fold = answer["q3_attribution_per_fold"]
    others, two = per_fold[per_fold["driver"] != "D2"], per_fold[per_fold["driver"] == "D2"]
    assert (others[["ig_mean_abs", "saliency_mean"]] == 0).all().all()
    assert (others["ig_mean_carriers"].dropna() == 0).all()
    assert (two[["ig_mean_abs", "ig_mean_carriers", "saliency_mean"]] > 0).all().all()


def test_q3_gives_nan_with_a_reason_where_a_fold_has_no_carrier(driver_two_answer) -> None:
    cohort, answer = driver_two_answer
    per_fold = answer["q3_attribution_per_fold"]
    never = per_fold[per_fold["driver"] == "NEVER"]
    assert never["ig_mean_carriers"].isna().all() and (never["n_carriers"] == 0).all()
    assert never["note"].str.contains("no carrier").all()
    assert (per_fold.loc[per_fold["driver"] != "NEVER", "note"] == "").all()
    summary = answer["q3_attribution_summary"].set_index(["driver", "metric"])
    assert np.isnan(summary.loc[("NEVER", "ig_mean_carriers"), "mean"])
    assert summary.loc[("NEVER", "ig_mean_carriers"), "n_folds"] == 0


def test_q3_tables_use_every_held_out_patient(small_sim, small_folds) -> None:
    cohort = small_sim.cohort
    answer = q3_master_regulators(small_folds, n_steps=16)
    per_fold = answer["q3_attribution_per_fold"]
    assert list(per_fold.columns) == PER_FOLD_COLUMNS
    assert len(per_fold) == len(small_folds) * len(cohort.driver_names)
    assert per_fold.groupby("fold")["n_patients"].first().sum() == cohort.n_patients
    carriers = per_fold.groupby("driver", sort=False)["n_carriers"].sum()
    assert carriers.to_dict() == cohort.drivers.sum().to_dict()
    summary = answer["q3_attribution_summary"]
    assert len(summary) == 3 * len(cohort.driver_names)
    assert {"mean", "ci_low", "ci_high", "n_folds", "per_fold"} <= set(summary.columns)
    assert set(answer["q3_rank_stability"]["driver"]) == set(cohort.driver_names)
    assert list(answer["q3_completeness"]["fold"]) == [f.fold for f in small_folds]
    ranked = summary[summary["metric"] == "ig_mean_carriers"].set_index("driver")["mean"].dropna()
    comparison = answer["q3_comparison"].set_index("driver")["mean"]
    assert np.allclose(comparison, ranked[comparison.index]) and comparison.index[0] == ranked.idxmax()
