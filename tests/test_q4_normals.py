"""Q4 from the normal-tissue state: normals preprocessed with each training fold's pipeline, the
fold's normal state, the distances from it, and nothing new for cohorts without normals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lpmlib.cohort import CASE_ID, Cohort
from lpmlib.cv import run_cv
from lpmlib.manifest import RawCohort, read_manifest
from lpmlib.perturb import Z_STATE, edit_drivers, normal_state
from lpmlib.preprocess import PipelineSettings, RawLayerPipeline
from lpmlib.questions.resistance import NORMAL_PATIENT_COLUMNS, PATIENT_COLUMNS, q4_resistance_driver
from lpmlib.train import TrainSettings

PROJECT = Path(__file__).resolve().parents[1]
UCEC = PROJECT.parent / "shared" / "data" / "cptac-ucec"
SETTINGS = PipelineSettings(n_components=4, top_variance=8)
SMALL = {"latent_dim": 16, "vae_latent_dim": 8}
WILD_TYPE_QUANTITIES = {
    "distance_fraction",
    "distance_fraction_with_others",
    "distance_only",
    "distance_full",
}
NORMAL_QUANTITIES = {f"{q}_normal" for q in ("distance_fraction", "distance_only", "distance_full")}
NORMAL_QUANTITIES |= {"distance_fraction_normal_with_others"}


def synthetic_raw(n_tumours: int = 30, n_normals: int = 6, seed: int = 0) -> RawCohort:
    """Tumours whose layers depend on three drivers and on purity; normals without cancer cells.

    phos has every normal, acet only the first four, ubiq none (so it is masked for all of them).
    """
    rng = np.random.default_rng(seed)
    tumours = pd.Index([f"T{i:02d}" for i in range(n_tumours)], name=CASE_ID)
    normals = pd.Index([f"N{i}" for i in range(n_normals)], name=CASE_ID)
    drivers = pd.DataFrame(rng.integers(0, 2, (n_tumours, 3)), index=tumours, columns=["D1", "D2", "D3"])
    purity = rng.uniform(0.3, 0.9, n_tumours)
    purity[0] = np.nan  # one unknown purity, imputed by the training median
    layers, frames = {}, {}
    for name, n_features in {"prot": 12, "phos": 10, "acet": 8, "ubiq": 6}.items():
        features = [f"{name}{j}" for j in range(n_features)]
        tumour = drivers.to_numpy() @ rng.normal(size=(3, n_features))
        tumour += rng.normal(size=(n_tumours, n_features))
        tumour += np.outer(np.nan_to_num(purity, nan=0.6), 3 * rng.normal(size=n_features))  # purity effect
        tumour[1, 0] = np.nan  # a missing value, imputed by the training median
        layers[name] = pd.DataFrame(tumour, index=tumours, columns=features)
        normal = rng.normal(-1, 1, (n_normals, n_features))
        frames[name] = pd.DataFrame(normal, index=normals, columns=features)
    clinical = pd.DataFrame({"grade": rng.integers(0, 4, n_tumours), "purity": purity}, index=tumours)
    return RawCohort(
        clinical=clinical,
        drivers=drivers,
        layers=layers,
        endpoint="prot",
        roles={"prot": "target", "phos": "ptm", "acet": "ptm", "ubiq": "ptm"},
        normals={"prot": frames["prot"], "phos": frames["phos"], "acet": frames["acet"].iloc[:4]},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[RawCohort, list]:
    """Three folds of a tiny model trained briefly on `synthetic_raw` (about a second)."""
    raw = synthetic_raw()
    run_dir = tmp_path_factory.mktemp("normals_run")
    folds = run_cv(raw, run_dir, TrainSettings(epochs=3), n_folds=3, log=None, pipeline=SETTINGS, **SMALL)
    return raw, folds


def without_normals(folds: list) -> list:
    """The same trained folds whose views have no normal samples."""
    return [replace(fold, cohort=replace(fold.cohort, normals={})) for fold in folds]


# ---------------------------------------------------------------------------------------------
# Normals in the fold's view


def test_normals_are_transformed_by_the_training_fold_pipeline_without_purity_correction() -> None:
    raw, train = synthetic_raw(), np.arange(20)
    view = raw.fold_cohort(train, SETTINGS)
    assert set(view.normals) == {"prot", "phos", "acet"} and len(view.normals["acet"]) == 4
    for name, frame in raw.normals.items():
        pipeline = RawLayerPipeline(SETTINGS).fit(raw.layers[name].iloc[train], raw.clinical["purity"])
        assert pipeline.purity_used_  # the tumours' purity correction is active ...
        at_mean = pd.Series(pipeline.purity_mean_, index=frame.index)
        pd.testing.assert_frame_equal(view.normals[name], pipeline.transform(frame, at_mean))
        imputed = frame[pipeline.selected_features].fillna(pipeline.medians_)  # ... but leaves normals be
        pd.testing.assert_frame_equal(view.normals[name], pipeline.projector_.transform(imputed))
        at_zero = pipeline.transform(frame, pd.Series(0.0, index=frame.index))
        assert not np.allclose(view.normals[name], at_zero)  # purity 0 would add the mean cancer-cell signal
        assert list(view.normals[name].columns) == list(view.layers[name].values.columns)


def test_normal_values_never_reach_the_fit() -> None:
    raw, train = synthetic_raw(), np.arange(20)
    first = raw.fold_cohort(train, SETTINGS)
    raw.normals = {name: frame * 100 + 7 for name, frame in raw.normals.items()}
    second = raw.fold_cohort(train, SETTINGS)
    for name in raw.layers:
        pd.testing.assert_frame_equal(first.layers[name].values, second.layers[name].values)
        pd.testing.assert_frame_equal(first.layers[name].loadings, second.layers[name].loadings)
    assert all(not first.normals[name].equals(second.normals[name]) for name in raw.normals)


def test_a_cohort_checks_and_compares_its_normals() -> None:
    view = synthetic_raw().fold_cohort(np.arange(20), SETTINGS)
    parts = (view.clinical, view.drivers, view.layers, view.dropped)
    with pytest.raises(ValueError, match="normals of phos"):
        Cohort(*parts, {"phos": view.normals["phos"].iloc[:, ::-1]})
    with pytest.raises(ValueError, match="normals of nope"):
        Cohort(*parts, {"nope": view.normals["phos"]})
    assert view.equals(Cohort(*parts, dict(view.normals)))
    assert not view.equals(replace(view, normals={})) and not replace(view, normals={}).equals(view)


# ---------------------------------------------------------------------------------------------
# The normal state and Q4


@torch.no_grad()
def test_normal_state_is_the_mean_wild_type_state_of_the_normals_with_their_observed_ptms(trained) -> None:
    _, folds = trained
    fold = folds[1]
    view = fold.cohort
    assert view.ptm_names == ["phos", "acet", "ubiq"]
    inputs = {name: torch.zeros(6, view.layers[name].n_features) for name in view.ptm_names}
    for name in ("phos", "acet"):  # acet holds normals N0..N3 only; ubiq none
        values = fold.scaler.standardise(name, view.normals[name].to_numpy())
        inputs[name][: len(values)] = torch.as_tensor(values, dtype=torch.float32)
    mask = torch.tensor([[True, i < 4, False] for i in range(6)])
    fold.model.eval()
    by_hand = fold.model(torch.zeros(6, 3), torch.zeros(6, dtype=torch.long), inputs, mask).z_state.double()
    state = normal_state(fold)
    np.testing.assert_allclose(state, by_hand.numpy().mean(axis=0), rtol=1e-6, atol=1e-8)
    wild_type = edit_drivers(fold, "wild_type")["D1"].edited[Z_STATE][0]
    assert not np.allclose(state, wild_type)  # the normals' PTM layers move the state
    for normals in ({}, {"prot": view.normals["prot"]}):  # none at all, or none in a PTM layer
        assert normal_state(replace(fold, cohort=replace(view, normals=normals))) is None


def test_q4_measures_distances_from_the_normal_state(trained) -> None:
    _, folds = trained
    answer = q4_resistance_driver(folds)
    patients = answer["q4_resistance_per_patient"]
    assert list(patients.columns) == PATIENT_COLUMNS + NORMAL_PATIENT_COLUMNS
    assert np.isfinite(patients[NORMAL_PATIENT_COLUMNS].to_numpy()).all()
    alone = patients["n_other_drivers"] == 0
    assert alone.any() and np.allclose(patients.loc[alone, "distance_fraction_normal"], 1.0)

    fold = folds[2]  # by hand: ||z(only D2) - z_normal|| / ||z(full) - z_normal|| per carrier
    edit = edit_drivers(fold, "only", ["D2"])["D2"]
    mine = patients[(patients["driver"] == "D2") & (patients["fold"] == fold.fold)]
    lone = (mine["n_other_drivers"] == 0).to_numpy()[:, None]
    z_full = edit.baseline[Z_STATE]
    z_only = np.where(lone, z_full, edit.edited[Z_STATE])
    z_normal = normal_state(fold)
    expected = np.linalg.norm(z_only - z_normal, axis=1) / np.linalg.norm(z_full - z_normal, axis=1)
    np.testing.assert_allclose(mine["distance_fraction_normal"], expected, rtol=1e-10)

    per_fold = answer["q4_resistance_per_fold"]
    assert set(per_fold["quantity"]) == WILD_TYPE_QUANTITIES | NORMAL_QUANTITIES
    row = per_fold[
        (per_fold["driver"] == "D2")
        & (per_fold["fold"] == fold.fold)
        & (per_fold["quantity"] == "distance_fraction_normal")
    ]
    assert row["value"].item() == pytest.approx(expected.mean())
    summary = answer["q4_resistance_summary"].set_index(["quantity", "driver"])
    assert np.isfinite(summary.loc["distance_fraction_normal", "mean"]).all()
    assert (summary.loc["distance_fraction_normal", "n_carriers"] == patients["driver"].value_counts()).all()


def test_without_normals_q4_is_exactly_the_wild_type_analysis(trained) -> None:
    _, folds = trained
    with_normals = q4_resistance_driver(folds)
    bare = without_normals(folds)
    plain = q4_resistance_driver(bare)
    assert list(plain["q4_resistance_per_patient"].columns) == PATIENT_COLUMNS
    assert set(plain["q4_resistance_per_fold"]["quantity"]) == WILD_TYPE_QUANTITIES
    pd.testing.assert_frame_equal(
        plain["q4_resistance_per_patient"], with_normals["q4_resistance_per_patient"][PATIENT_COLUMNS]
    )
    per_fold = with_normals["q4_resistance_per_fold"]
    wild_type = per_fold[per_fold["quantity"].isin(WILD_TYPE_QUANTITIES)].reset_index(drop=True)
    pd.testing.assert_frame_equal(plain["q4_resistance_per_fold"], wild_type)


def test_a_seed_layout_cohort_has_no_normal_quantities(small_sim, small_folds) -> None:
    assert small_sim.cohort.normals == {}
    answer = q4_resistance_driver(small_folds)
    assert list(answer["q4_resistance_per_patient"].columns) == PATIENT_COLUMNS
    assert set(answer["q4_resistance_summary"]["quantity"]) == WILD_TYPE_QUANTITIES


# ---------------------------------------------------------------------------------------------
# The public CPTAC UCEC cohort: 49 normal samples


@pytest.mark.skipif(not UCEC.is_dir(), reason=f"the public CPTAC UCEC data are not at {UCEC}")
def test_ucec_q4_measures_distances_from_normal_endometrium(tmp_path: Path) -> None:
    raw = read_manifest(PROJECT / "examples" / "ucec.yaml")
    pipeline = PipelineSettings(n_components=8, top_variance=400)
    folds = run_cv(raw, tmp_path, TrainSettings(epochs=2), n_folds=3, log=None, pipeline=pipeline, **SMALL)
    view = folds[0].cohort
    assert {name: frame.shape for name, frame in view.normals.items()} == {
        "protein": (49, 8),
        "miRNA": (14, 8),
        "phospho": (49, 8),
        "acetyl": (49, 8),
    }
    states = [normal_state(fold) for fold in folds]
    assert all(np.isfinite(state).all() for state in states) and not np.allclose(states[0], states[1])
    answer = q4_resistance_driver(folds)
    patients = answer["q4_resistance_per_patient"]
    assert len(patients) == raw.drivers.to_numpy().sum()  # every carrier of every driver, once
    assert np.isfinite(patients[NORMAL_PATIENT_COLUMNS].to_numpy()).all()
    per_fold = answer["q4_resistance_per_fold"]
    fraction = per_fold[per_fold["quantity"] == "distance_fraction_normal"]
    assert len(fraction) == 3 * len(raw.drivers.columns)
    assert np.isfinite(fraction.loc[fraction["n_carriers"] > 0, "value"]).all()
