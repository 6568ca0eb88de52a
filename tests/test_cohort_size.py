"""R^2 against cohort size: every model and the ceiling per size and layer, resumable, and the LPM
minus ridge read off the same folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lpmlib.cohort_size import CURVE_METHODS, gain_sentence, gains_over_ridge, r2_by_cohort_size
from lpmlib.simulate import SimulationConfig, simulate_cohort
from lpmlib.train import TrainSettings

SIZES = [40, 80]
SETTINGS = TrainSettings(epochs=2)  # the mechanics, not the quality
SMALL = {"latent_dim": 16, "vae_latent_dim": 8}


@pytest.fixture(scope="module")
def curve(tmp_path_factory) -> tuple:
    run_dir = tmp_path_factory.mktemp("curve")
    return run_dir, r2_by_cohort_size(SIZES, run_dir, SETTINGS, n_folds=2, **SMALL)


def test_every_size_layer_model_and_inputs_has_one_row(curve) -> None:
    _, table = curve
    targets = ["rna", "protein", "metabolome"]
    assert set(table["layer"]) == set(targets) and set(table["model"]) == set(CURVE_METHODS)
    fitted = table[table["model"] != "noise_ceiling"]
    assert len(fitted) == len(SIZES) * len(targets) * 4 * 2 and set(fitted["inputs"]) == {
        "all",
        "genomics_only",
    }
    assert (fitted["n_folds"] == 2).all() and fitted["mean"].notna().all()
    assert not fitted.duplicated(["n_patients", "layer", "model", "inputs"]).any()


def test_the_ceiling_is_the_simulated_cohorts_own(curve) -> None:
    _, table = curve
    ceiling = table[table["model"] == "noise_ceiling"].set_index(["n_patients", "layer"])["mean"]
    for size in SIZES:
        truth = simulate_cohort(SimulationConfig(n_patients=size)).layer_truth.set_index("layer")[
            "noise_ceiling"
        ]
        for layer in ("rna", "protein", "metabolome"):
            assert ceiling[(size, layer)] == pytest.approx(truth[layer])


def test_a_second_call_reuses_the_checkpoints_and_gives_the_same_table(curve) -> None:
    run_dir, table = curve
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("model.pt")}
    assert len(stamps) == len(SIZES) * 2
    again = r2_by_cohort_size(SIZES, run_dir, SETTINGS, n_folds=2, **SMALL)
    pd.testing.assert_frame_equal(again, table)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("model.pt")} == stamps


def test_the_lpms_gain_is_its_mean_r2_minus_ridges_per_size_layer_and_inputs(curve) -> None:
    _, table = curve
    gain = gains_over_ridge(table).set_index(["n_patients", "layer", "inputs", "model"])["gain"]
    mean = table.set_index(["n_patients", "layer", "model", "inputs"])["mean"]
    for size in SIZES:
        for layer in ("rna", "metabolome"):
            for inputs in ("all", "genomics_only"):
                expected = mean[(size, layer, "lpm", inputs)] - mean[(size, layer, "ridge", inputs)]
                assert gain[(size, layer, inputs, "lpm")] == pytest.approx(
                    expected, abs=1e-3
                )  # 4-digit folds


def test_gains_over_ridge_pair_the_folds_and_the_sentence_counts_them(curve) -> None:
    _, table = curve
    gains = gains_over_ridge(table)
    assert len(gains) == len(SIZES) * 3 * 2 * 2 and set(gains["model"]) == {"lpm", "deep"}
    per_fold = table.set_index(["n_patients", "layer", "inputs", "model"])["per_fold"]
    fold_values = lambda key: np.array([float(v) for v in per_fold[key].split(";")])  # noqa: E731
    for row in gains.itertuples():
        gain = fold_values((row.n_patients, row.layer, row.inputs, row.model)) - fold_values(
            (row.n_patients, row.layer, row.inputs, "ridge")
        )
        assert row.gain == pytest.approx(gain.mean()) and row.ci_low <= row.gain <= row.ci_high
        assert row.folds_ahead == f"{(gain > 0).sum()}/2"
    sentence = gain_sentence(gains)
    assert sentence.count(f"of {len(SIZES) * 3 * 2} (size, layer, inputs) points") == 2
    clearly_behind = ((gains["model"] == "deep") & (gains["gain"] < -0.01) & (gains["ci_high"] < 0)).sum()
    assert f"It is clearly behind on {clearly_behind}." in sentence.split("The deep path alone")[1]
