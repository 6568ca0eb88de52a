"""Q1 gene knockout, Q2 fusion deletion, Q4 resistance driver and the Q1 permutation null."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import RNA_DRIVER

from lpmlib.cohort import Cohort
from lpmlib.errors import UnknownDriverError
from lpmlib.perturb import Z_STATE, edit_drivers
from lpmlib.questions.fusion import q2_fusion_deletion
from lpmlib.questions.knockout import (
    effect_test_sentence,
    held_out_effect_test,
    held_out_effect_units,
    q1_gene_knockout,
)
from lpmlib.questions.permutation import NULL_COLUMNS, knockout_permutation_null, permutation_p_values
from lpmlib.questions.resistance import q4_resistance_driver
from lpmlib.questions.shifts import PER_FOLD_COLUMNS, knockout_per_fold, shift_units, storm_units
from lpmlib.train import TrainSettings

GENE = "FOXA1"


@pytest.fixture(scope="module")
def q1(small_sim, small_folds):
    return q1_gene_knockout(small_folds, gene=GENE)


def with_drivers(cohort: Cohort, **columns: np.ndarray) -> Cohort:
    """A copy of the cohort with some driver columns replaced."""
    drivers = cohort.drivers.copy()
    for name, values in columns.items():
        drivers[name] = values
    return Cohort(cohort.clinical, drivers, cohort.layers)


def test_q1_tables_cover_every_driver_layer_and_fold(small_sim, small_folds, q1) -> None:
    cohort = small_sim.cohort
    per_fold = q1["q1_knockout_per_fold"]
    assert list(per_fold.columns) == PER_FOLD_COLUMNS
    n_layers = len(cohort.target_names + cohort.ptm_names)
    assert len(per_fold) == len(small_folds) * len(cohort.driver_names) * (1 + 3 * n_layers)
    storm = per_fold[per_fold["quantity"] == "storm_intensity"]
    assert set(storm["layer"]) == {Z_STATE}
    totals = storm.groupby("driver", sort=False)[["n_patients", "n_carriers"]].sum()
    assert (totals["n_patients"] == cohort.n_patients).all()
    assert totals["n_carriers"].to_dict() == cohort.drivers.sum().to_dict()


def test_q1_is_nan_with_a_reason_exactly_where_a_driver_has_no_carrier(q1) -> None:
    per_fold = q1["q1_knockout_per_fold"]
    absent = per_fold["n_carriers"] == 0
    assert absent.any() and per_fold.loc[absent, "value"].isna().all()
    assert (
        per_fold.loc[absent, "note"]
        == per_fold.loc[absent, "driver"].map(lambda d: f"no carrier of {d} in this fold's held-out patients")
    ).all()
    present = per_fold[~absent]
    assert np.isfinite(present["value"]).all() and (present["note"] == "").all()
    storm = present[present["quantity"] == "storm_intensity"]["value"]
    assert (storm > 0).all()  # a trained model's state moves when its genomic input changes
    assert (present["value"] >= 0).all()


def test_q1_one_carrier_and_all_carriers(small_sim, small_folds) -> None:
    cohort = small_sim.cohort
    lone = np.zeros(cohort.n_patients, dtype=int)
    lone[small_folds[2].test_rows[0]] = 1
    edited = with_drivers(cohort, SKIL=lone, ERG=np.ones(cohort.n_patients, dtype=int))
    folds = [dataclasses.replace(fold, cohort=edited) for fold in small_folds]  # the folds' view of it
    per_fold = knockout_per_fold(folds, ["SKIL", "ERG"])
    skil = per_fold[per_fold["driver"] == "SKIL"]
    assert set(skil.loc[skil["n_carriers"] == 1, "fold"]) == {small_folds[2].fold}
    assert np.isfinite(skil.loc[skil["n_carriers"] == 1, "value"]).all()
    assert skil.loc[skil["n_carriers"] == 0, "value"].isna().all()
    erg = per_fold[per_fold["driver"] == "ERG"]
    observed = erg["quantity"] == "observed_difference_rms"
    assert erg.loc[observed, "value"].isna().all() and np.isfinite(erg.loc[~observed, "value"]).all()
    reason = "every held-out patient carries ERG: no non-carrier to compare"
    assert (erg.loc[observed, "note"] == reason).all()


def test_q1_summary_is_the_mean_over_the_finite_folds(q1) -> None:
    per_fold, summary = q1["q1_knockout_per_fold"], q1["q1_knockout_summary"]
    keys = ["driver", "layer", "quantity"]
    grouped = per_fold.groupby(keys, sort=False)
    expected = grouped["value"].agg(["mean", "count"]).reset_index()
    merged = summary.merge(expected, on=keys, suffixes=("", "_direct"))
    assert len(merged) == len(summary) == grouped.ngroups
    assert np.allclose(merged["mean"], merged["mean_direct"], equal_nan=True)
    assert (merged["n_folds"] == merged["count"]).all()
    never = summary[summary["n_folds"] == 0]
    assert set(never["driver"]) == {"IDH1"} and never["mean"].isna().all()  # IDH1 has no carrier at all


def test_an_unknown_gene_is_an_error_listing_the_valid_names(small_sim, small_folds, tmp_path) -> None:
    cohort = small_sim.cohort
    for question in (q1_gene_knockout, q2_fusion_deletion):
        with pytest.raises(UnknownDriverError, match="Valid drivers: ERG, ETV1"):
            question(small_folds, gene="NOT_A_GENE")
    with pytest.raises(UnknownDriverError, match="Valid drivers: ERG, ETV1"):
        knockout_permutation_null(cohort, "NOT_A_GENE", tmp_path, TrainSettings(), 0)


def test_feature_effects_equal_the_knockout_of_z_scored_features(small_sim, small_folds, q1) -> None:
    cohort = small_sim.cohort
    table = q1["q1_feature_effects"]
    assert set(table["layer"]) == set(cohort.target_names + cohort.ptm_names)
    for layer in ("rna", "acetyl"):
        loadings = cohort.layers[layer].loadings
        effects, differences = [], []
        for fold in small_folds:
            edit = edit_drivers(fold, "knockout", [GENE])[GENE]
            features_after = edit.edited[layer] @ loadings.to_numpy()
            features_before = edit.baseline[layer] @ loadings.to_numpy()
            effects.append((features_after - features_before).mean(axis=0))
            features = cohort.layers[layer].values.to_numpy()[fold.test_rows] @ loadings.to_numpy()
            carrier = np.isin(np.arange(len(fold.test_rows)), edit.rows)
            differences.append(features[carrier].mean(axis=0) - features[~carrier].mean(axis=0))
        direct = pd.DataFrame(
            {"effect": np.mean(effects, axis=0), "observed": np.mean(differences, axis=0)},
            index=loadings.columns,
        )
        top = direct.loc[direct["effect"].abs().sort_values(ascending=False).index[:20]]
        mine = table[table["layer"] == layer]
        assert list(mine["feature"]) == list(top.index) and list(mine["rank"]) == list(range(1, 21))
        assert np.allclose(mine["effect"], top["effect"])
        assert np.allclose(mine["observed_difference"], top["observed"])


def test_q1_on_a_known_model(known) -> None:
    cohort, model, folds = known
    rna_driver = cohort.driver_names[RNA_DRIVER]
    answer = q1_gene_knockout(folds, gene=rna_driver)
    summary = answer["q1_knockout_summary"].set_index(["driver", "layer", "quantity"])["mean"]
    vector = model.rna_vector.double().numpy()
    with_carriers = [d for d in cohort.driver_names if cohort.driver(d).sum() > 0]
    for driver in with_carriers:
        assert summary[(driver, Z_STATE, "storm_intensity")] == pytest.approx(1.0)  # z_state is the genome
        rna = summary[(driver, "rna", "shift_rms")]
        assert rna == (pytest.approx(np.sqrt(np.mean(vector**2))) if driver == rna_driver else 0.0)
    effects = answer["q1_feature_effects"]
    rna = effects[effects["layer"] == "rna"].set_index("feature")["effect"]
    expected = -vector @ cohort.layers["rna"].loadings.to_numpy()
    assert np.allclose(rna, pd.Series(expected, cohort.layers["rna"].loadings.columns)[rna.index])


def test_the_held_out_effect_test_supports_real_effects_and_not_fitted_ones(known) -> None:
    """Observed rna carries the known model's effect of its rna driver (plus noise); the observed metabolome
    is noise, so the model's effect of every driver on it (+1 per feature) is fitted, not real."""
    cohort, _, folds = known
    rng = np.random.default_rng(0)
    rna, metabolome = cohort.layers["rna"], cohort.layers["metabolome"]
    carrier = cohort.drivers.iloc[:, RNA_DRIVER].to_numpy(dtype=float)[:, None]
    signal = carrier * np.arange(1, rna.n_features + 1) + rng.normal(size=rna.values.shape)
    layers = dict(cohort.layers)
    layers["rna"] = dataclasses.replace(
        rna, values=pd.DataFrame(signal, rna.values.index, rna.values.columns)
    )
    noise = pd.DataFrame(
        rng.normal(size=metabolome.values.shape), metabolome.values.index, metabolome.values.columns
    )
    layers["metabolome"] = dataclasses.replace(metabolome, values=noise)
    cohort = dataclasses.replace(cohort, layers=layers)
    folds = [dataclasses.replace(fold, cohort=cohort) for fold in folds]  # the folds' view of it
    edits = [edit_drivers(fold, "knockout") for fold in folds]
    test = held_out_effect_test(held_out_effect_units(folds, edits)).set_index(["driver", "layer"])
    rna_driver = cohort.driver_names[RNA_DRIVER]
    assert test.loc[(rna_driver, "rna"), "supported"] and test.loc[(rna_driver, "rna"), "mean_gain"] > 0
    on_metabolome = test.xs("metabolome", level="layer").dropna(subset=["gain_p_value"])
    assert len(on_metabolome) > 5 and not on_metabolome["supported"].any()
    assert (on_metabolome["mean_gain"] < 0).all()  # removing a fitted effect brings the prediction closer
    assert (
        test.loc[(rna_driver, "rna"), "n_carriers"] == cohort.drivers[rna_driver].sum()
    )  # each carrier once
    assert f"support {int(test['supported'].sum())} of the" in effect_test_sentence(test.reset_index())


def test_q2_names_a_top_layer_only_where_the_comparison_separates_it(small_sim, small_folds) -> None:
    cohort = small_sim.cohort
    answer = q2_fusion_deletion(small_folds, gene="ERG")
    per_fold, summary = answer["q2_ptm_per_fold"], answer["q2_ptm_summary"]
    assert set(per_fold["layer"]) == set(summary["layer"]) == set(cohort.ptm_names)
    assert set(per_fold["quantity"]) == {"shift_standardised"}
    assert summary["n_folds_top"].sum() == len(small_folds)
    comparison = answer["q2_comparison"].set_index("layer")
    assert comparison.index[0] == summary.loc[summary["mean"].idxmax(), "layer"]
    assert np.allclose(comparison["mean"], summary.set_index("layer").loc[comparison.index, "mean"])
    others = comparison.iloc[1:]
    assert others["p_value"].between(0, 1).all() and (others["p_adjusted"] >= others["p_value"]).all()
    verdict = answer["q2_verdict"].iloc[0]
    assert (verdict["leader"] == comparison.index[0]) == bool(others["separated"].all())
    assert verdict["not_separated"].split(";")[0] == comparison.index[0]


def test_the_per_carrier_values_average_to_the_per_fold_values(small_sim, small_folds, q1) -> None:
    cohort = small_sim.cohort
    edits = [edit_drivers(fold, "knockout") for fold in small_folds]
    per_fold = q1["q1_knockout_per_fold"].set_index(["driver", "layer", "quantity", "fold"])["value"]
    units = shift_units(small_folds, edits, GENE, cohort.ptm_names)
    for (layer, fold), value in units.groupby(["layer", "fold"])["value"].mean().items():
        assert value == pytest.approx(per_fold[(GENE, layer, "shift_standardised", fold)])
    storm = storm_units(small_folds, edits).groupby(["driver", "fold"])["value"].mean()
    for (driver, fold), value in storm.items():
        assert value == pytest.approx(per_fold[(driver, Z_STATE, "storm_intensity", fold)])
    for name in ("q1_layer_verdict", "q1_storm_verdict"):
        verdict = q1[name].iloc[0]
        assert verdict["leader"] in ("", verdict["not_separated"]) and verdict["sentence"]


def test_q4_on_a_known_model_gives_one_over_root_of_the_number_of_drivers(known) -> None:
    cohort, _, folds = known  # z_state is the genome: |z(only) - z(wt)| = 1, |z(full) - z(wt)| = sqrt(k)
    answer = q4_resistance_driver(folds)
    patients = answer["q4_resistance_per_patient"]
    k = patients["n_other_drivers"] + 1
    assert np.allclose(patients["distance_only"], 1.0) and np.allclose(patients["distance_full"], np.sqrt(k))
    assert np.allclose(patients["distance_fraction"], 1 / np.sqrt(k))
    per_fold = answer["q4_resistance_per_fold"]
    row = per_fold[(per_fold["driver"] == "ERG") & (per_fold["quantity"] == "distance_fraction")].iloc[0]
    erg = patients[(patients["driver"] == "ERG") & (patients["fold"] == row["fold"])]
    assert row["value"] == pytest.approx((1 / np.sqrt(erg["n_other_drivers"] + 1)).mean())


def test_q4_fractions_are_one_for_lone_carriers_and_finite_elsewhere(small_sim, small_folds) -> None:
    cohort = small_sim.cohort
    answer = q4_resistance_driver(small_folds)
    patients = answer["q4_resistance_per_patient"]
    alone = patients["n_other_drivers"] == 0
    assert alone.any() and (patients.loc[alone, "distance_fraction"] == 1.0).all()
    assert np.isfinite(patients["distance_fraction"]).all() and (patients["distance_full"] > 0).all()
    per_fold = answer["q4_resistance_per_fold"]
    fraction_rows = per_fold[per_fold["quantity"] == "distance_fraction"]
    counted = fraction_rows.groupby("driver")["n_carriers_alone"].sum()
    lone_carriers = patients.loc[alone, "driver"].value_counts()
    assert counted.to_dict() == {d: int(lone_carriers.get(d, 0)) for d in cohort.driver_names}
    summary = answer["q4_resistance_summary"]
    fraction = summary[summary["quantity"] == "distance_fraction"]
    assert fraction.loc[fraction["rank"] == 1, "mean"].iloc[0] == fraction["mean"].max()
    with_others = summary[summary["quantity"] == "distance_fraction_with_others"].set_index("driver")["mean"]
    comparison = answer["q4_comparison"].set_index("driver")["mean"]
    assert comparison.index[0] == with_others.idxmax()
    assert np.allclose(comparison, with_others[comparison.index])
    verdict = answer["q4_verdict"].iloc[0]
    assert verdict["quantity"] == "distance_fraction_with_others"
    assert verdict["not_separated"].startswith(comparison.index[0])


def test_permutation_null_without_permutations_trains_nothing(small_sim, tmp_path) -> None:
    null = knockout_permutation_null(small_sim.cohort, GENE, tmp_path, TrainSettings(epochs=2), 0)
    assert null.empty and list(null.columns) == NULL_COLUMNS
    assert not (tmp_path / "permutations").exists()
    assert permutation_p_values(pd.DataFrame(columns=["driver", "layer", "quantity", "mean"]), null).empty


def test_permutation_null_and_p_values_on_a_tiny_setting(small_sim, q1, tmp_path) -> None:
    cohort = small_sim.cohort
    settings = TrainSettings(epochs=2)
    null = knockout_permutation_null(cohort, GENE, tmp_path, settings, 2, latent_dim=16, vae_latent_dim=8)
    layers = [Z_STATE] + cohort.target_names + cohort.ptm_names
    assert null.groupby("layer").size().reindex(layers).tolist() == [2] * len(layers)
    assert (tmp_path / "permutations" / GENE / "1" / "cv" / "fold5").is_dir()
    assert np.isfinite(null["value"]).all() and null["n_folds"].between(1, 5).all()
    p_values = permutation_p_values(q1["q1_knockout_summary"], null)
    assert len(p_values) == len(layers) and (p_values["n_permutations"] == 2).all()
    assert set(p_values["p_value"]) <= {1 / 3, 2 / 3, 1.0}
    assert p_values["p_adjusted"].between(0, 1, inclusive="right").all()
    assert (p_values["p_adjusted"] >= p_values["p_value"]).all()
