"""The linear baseline nested in the LPM: closed-form anchors, reduced-rank ridge, read-outs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import Ridge, RidgeCV

from lpmlib.cohort import N_GRADES, Cohort, Layer
from lpmlib.cv import fold_splits, model_config, run_cv
from lpmlib.linear import (
    RIDGE_ALPHAS,
    ReducedRankRidgeCV,
    fit_fixed,
    fit_reduced_rank_ridge,
    fit_ridge,
    thin_svd,
)
from lpmlib.model import INPUTS, LatentPerturbationModel, masking_patterns
from lpmlib.performance import held_out_errors, lpm_versus_ridge, q0_per_fold, q0_summary, r2_table
from lpmlib.tensors import CohortTensors, LayerScaler
from lpmlib.train import TrainSettings, choose_read_outs, fit_anchors


def model_inputs(cohort: Cohort, scaler: LayerScaler, rows: np.ndarray, visible: list[str]) -> np.ndarray:
    """Drivers, one-hot grade and the visible PTM layers as the model sees them, built independently."""
    grade = np.eye(N_GRADES)[cohort.clinical["grade"].to_numpy()[rows]]
    ptms = [scaler.standardise(p, cohort.layers[p].values.to_numpy()[rows]) for p in visible]
    return np.hstack([cohort.drivers.to_numpy(dtype=float)[rows], grade, *ptms])


@pytest.mark.parametrize(
    ("layer", "pattern"),
    [
        ("rna", "all"),
        ("rna", "genomics_only"),
        ("acetyl", "without_acetyl"),
        ("acetyl", "all"),
        ("metabolome", "genomics_only"),
    ],
)
def test_the_anchor_alone_reproduces_ridgecv_on_a_fold(small_sim, layer: str, pattern: str) -> None:
    """On a layer's evaluation problems (every other input; genomics only), where alpha is chosen."""
    cohort = small_sim.cohort
    train, test = fold_splits(cohort.n_patients, 5, seed=42)[0]
    scaler = LayerScaler.fit(cohort, train)
    model = LatentPerturbationModel(model_config(cohort, latent_dim=16, vae_latent_dim=8)).double().eval()
    fit_anchors(model, CohortTensors.build(cohort, train, scaler, torch.float64), "ridge")
    data = CohortTensors.build(cohort, test, scaler, torch.float64)
    mask = masking_patterns(cohort.ptm_names)[pattern].expand(len(test), -1)
    with torch.no_grad():
        predicted = model(
            data.drivers, data.grade, {p: data.layers[p] for p in cohort.ptm_names}, mask
        ).predictions
    visible = [p for p, seen in zip(cohort.ptm_names, mask[0].tolist()) if seen and p != layer]
    y = cohort.layers[layer].values.to_numpy()
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(model_inputs(cohort, scaler, train, visible), y[train])
    expected = ridge.predict(model_inputs(cohort, scaler, test, visible))
    np.testing.assert_allclose(
        scaler.original_units(layer, predicted[layer].numpy()), expected, atol=1e-6, rtol=0
    )


def low_rank_problem(n: int, rank: int, seed: int = 0, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 40))
    coef = rng.normal(size=(40, rank)) @ rng.normal(size=(rank, 30)) / 4
    return x, x @ coef + noise * rng.normal(size=(n, 30))


def test_reduced_rank_ridge_finds_a_low_rank_map_and_predicts_better_than_ridge() -> None:
    x, y = low_rank_problem(400, rank=3)
    fit = fit_reduced_rank_ridge(x[:200], y[:200])
    assert fit.rank == 3
    held_out = lambda model: np.sum((model.predict(x[200:]) - y[200:]) ** 2)  # noqa: E731
    assert held_out(fit) < 0.97 * held_out(fit_ridge(x[:200], y[:200]))
    estimator = ReducedRankRidgeCV().fit(x[:200], y[:200])
    assert estimator.rank_ == 3 and np.allclose(estimator.predict(x[200:]), fit.predict(x[200:]))


def test_on_outputs_unrelated_to_the_inputs_reduced_rank_ridge_keeps_plain_ridge() -> None:
    """The best of 30 choices beats ridge in the CV by chance; only a clear gain may replace it."""
    for seed in range(10):
        rng = np.random.default_rng(seed)
        fit = fit_reduced_rank_ridge(rng.normal(size=(150, 20)), rng.normal(size=(150, 30)))
        assert (fit.rank, fit.alpha_factor) == (None, 1.0), seed


def test_full_rank_is_plain_ridge_and_a_full_rank_map_is_kept() -> None:
    x, y = low_rank_problem(300, rank=30, noise=0.1)
    fit = fit_reduced_rank_ridge(x, y)
    assert fit.rank is None
    ridge = Ridge(alpha=fit.alpha).fit(x, y)
    np.testing.assert_allclose(fit.predict(x), ridge.predict(x), atol=1e-8)
    same = fit_fixed(x, y, fit)
    np.testing.assert_allclose(same.coef, fit.coef, atol=1e-12)


@pytest.mark.parametrize("n_rows", [500, 6], ids=["tall", "wide"])
def test_thin_svd_of_a_centred_design_with_one_hot_grades(n_rows: int) -> None:
    """Centred one-hot columns sum to zero: the decomposition keeps the other directions, as numpy's."""
    rng = np.random.default_rng(0)
    x = np.hstack([rng.normal(size=(n_rows, 6)), np.eye(3)[np.arange(n_rows) % 3]])
    x -= x.mean(axis=0)
    u, s, vt = thin_svd(x)
    expected = np.linalg.svd(x, compute_uv=False)
    rank = int(np.sum(expected > expected[0] * 1e-10))
    np.testing.assert_allclose(s[:rank], expected[:rank], rtol=1e-10)
    assert np.all(s[rank:] < expected[0] * 1e-10)
    np.testing.assert_allclose((u * s) @ vt, x, atol=1e-10)
    np.testing.assert_allclose(u[:, :rank].T @ u[:, :rank], np.eye(rank), atol=1e-10)
    np.testing.assert_allclose(vt @ vt.T, np.eye(len(s)), atol=1e-10)


def test_a_few_patients_are_cross_validated_one_left_out_at_a_time() -> None:
    x, y = low_rank_problem(3, rank=2)
    fit = fit_reduced_rank_ridge(x, y)  # 5 folds asked, 3 patients: every rank below 2 is no choice
    assert fit.rank is None and fit.alpha_factor in (1 / 16, 1 / 4, 1.0)
    np.testing.assert_allclose(fit.predict(x), Ridge(alpha=fit.alpha).fit(x, y).predict(x), atol=1e-8)


def linear_cohort(template: Cohort, seed: int = 3) -> Cohort:
    """A cohort whose PTM layers are independent noise and whose target layers are an exact linear
    function of drivers, grade and the PTM layers plus noise: nothing for depth to find."""
    rng = np.random.default_rng(seed)
    index = template.case_ids
    ptms = {p: pd.DataFrame(rng.normal(size=(len(index), 6)), index=index) for p in template.ptm_names}
    inputs = np.hstack(
        [
            template.drivers.to_numpy(dtype=float),
            np.eye(N_GRADES)[template.clinical["grade"]],
            *(f.to_numpy() for f in ptms.values()),
        ]
    )
    layers = {p: Layer(p, "ptm", frame) for p, frame in ptms.items()}
    for name in template.target_names:
        values = inputs @ rng.normal(scale=0.5, size=(inputs.shape[1], 8)) + rng.normal(size=(len(index), 8))
        layers[name] = Layer(name, "target", pd.DataFrame(values, index=index))
    return dataclasses.replace(template, layers=layers)


def test_on_an_exactly_linear_cohort_the_lpm_matches_ridge(small_sim, tmp_path) -> None:
    cohort = linear_cohort(small_sim.cohort)
    folds = run_cv(cohort, tmp_path, TrainSettings(epochs=8), log=None, latent_dim=16, vae_latent_dim=8)
    errors = held_out_errors(folds)
    table = r2_table(q0_summary(q0_per_fold(folds, errors)))
    for layer in cohort.target_names:
        assert table.loc[layer, "ridge_all"] > 0.5  # a real signal, which ridge finds
        assert abs(table.loc[layer, "lpm_all"] - table.loc[layer, "ridge_all"]) < 0.01, layer
    versus = lpm_versus_ridge(cohort, errors)
    assert set(versus["layer"]) == set(cohort.layers) and (versus["n_patients"] == cohort.n_patients).all()


def test_an_untrained_model_reads_out_its_anchors(small_sim) -> None:
    cohort = small_sim.cohort
    rows = np.arange(cohort.n_patients)
    scaler = LayerScaler.fit(cohort, rows)
    model = LatentPerturbationModel(model_config(cohort, latent_dim=16, vae_latent_dim=8)).eval()
    fit_anchors(model, CohortTensors.build(cohort, rows[:90], scaler), "ridge")
    error, table = choose_read_outs(model, CohortTensors.build(cohort, rows[90:], scaler))
    assert (table["read_out"] == "anchor").all()  # an untrained model: its direct read-out never helps
    # the residual read-outs of an untrained model equal the anchor (its residual decoders output zero), so
    # the best deep read-out is never worse than the anchor; a blend with the random direct read-out may
    # be slightly better by chance, but not by the separation the read-out needs
    assert np.isclose(error, table["inner_error_deep"].mean())
    assert (table["inner_error_deep"] <= table["inner_error_anchor"] + 1e-12).all()
    assert list(zip(table["layer"], table["inputs"])) == [(n, k) for n in model.output_dims for k in INPUTS]
