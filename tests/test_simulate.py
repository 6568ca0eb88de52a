"""The planted-truth simulator: determinism, the data contract, and the truth it plants."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.metrics import make_scorer, r2_score
from sklearn.model_selection import KFold, cross_val_score
from threadpoolctl import threadpool_limits

from lpmlib.cohort import SEED_DRIVERS, SEED_PTMS, read_seed_layout
from lpmlib.simulate import (
    ETS_FUSIONS,
    NONLINEAR_PAIRS,
    STRONG_DRIVERS,
    TARGET_PREVALENCE,
    TARGETS,
    ZERO_EFFECT_DRIVERS,
    SimulatedCohort,
    SimulationConfig,
    Simulator,
    draw_drivers,
    draw_gleason,
    draw_patients,
    draw_world,
    read_truth,
    simulate_cohort,
    write_simulated_cohort,
)

POOLED_R2 = make_scorer(r2_score, multioutput="variance_weighted")


@pytest.fixture(scope="module")
def default_sim() -> SimulatedCohort:
    return simulate_cohort()


@pytest.fixture(scope="module")
def large_sim() -> SimulatedCohort:
    return simulate_cohort(SimulationConfig(n_patients=3000))


@pytest.fixture(scope="module")
def sims_600() -> dict[str, SimulatedCohort]:
    """Two cohorts that differ only in the planted leader."""
    configs = {leader: SimulationConfig(n_patients=600, leader=leader) for leader in ("acetyl", "phospho")}
    return {leader: simulate_cohort(config) for leader, config in configs.items()}


def cv_r2(inputs: np.ndarray, targets: np.ndarray) -> float:
    """5-fold ridge R^2, pooled over the target columns (variance-weighted)."""
    ridge = RidgeCV(alphas=np.logspace(-2, 4, 13))
    folds = KFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(ridge, inputs, targets, cv=folds, scoring=POOLED_R2).mean())


def pcs(sim: SimulatedCohort, *layers: str) -> np.ndarray:
    return np.hstack([sim.cohort.layers[name].values.to_numpy() for name in layers])


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_same_config_writes_byte_identical_files_and_another_seed_does_not(
    default_sim: SimulatedCohort, tmp_path: Path
) -> None:
    first = folder_bytes(write_simulated_cohort(default_sim, tmp_path / "a"))
    with threadpool_limits(limits=2, user_api="blas"):  # the bytes must not depend on the BLAS threads
        second = folder_bytes(write_simulated_cohort(simulate_cohort(SimulationConfig()), tmp_path / "b"))
    other = folder_bytes(write_simulated_cohort(simulate_cohort(SimulationConfig(seed=7)), tmp_path / "c"))
    assert {"truth.json", "truth_knockout.csv", "truth_layers.csv", "FinalMetaData.csv"} <= set(first)
    assert len(first) == 3 + 1 + 2 * 8  # truth files, metadata, 8 layers with their loadings
    assert first == second
    assert set(other) == set(first)
    assert all(other[name] != first[name] for name in first)


def test_written_cohort_reads_back_equal_with_its_truth(default_sim: SimulatedCohort, tmp_path: Path) -> None:
    folder = write_simulated_cohort(default_sim, tmp_path)
    cohort = read_seed_layout(folder)
    assert cohort.equals(default_sim.cohort)
    assert read_truth(folder) == default_sim.truth
    assert read_truth(tmp_path / "nowhere") is None
    assert set(cohort.layers) == {"rna", "protein", "metabolome", *SEED_PTMS}
    assert cohort.ptm_names == sorted(SEED_PTMS) and cohort.layers["rna"].loadings.shape == (50, 600)
    assert {"ERG", "PTEN", "MSH2"} <= set(cohort.layers["rna"].loadings.columns)
    assert cohort.case_ids[0] == "SIM0001"


def test_grade_labels_are_gleason_scores_with_some_unknown(large_sim: SimulatedCohort) -> None:
    clinical = large_sim.cohort.clinical
    assert set(clinical["grade_label"]) == {"", "6", "7", "8", "9", "10"}
    assert 0.03 < (clinical["grade_label"] == "").mean() < 0.07
    expected = clinical["grade_label"].map({"": 0, "6": 1, "7": 2, "8": 3, "9": 4, "10": 4})
    assert (clinical["grade"] == expected).all()
    aggressive = large_sim.cohort.drivers["TP53"] == 1
    assert clinical["grade"][aggressive].mean() > clinical["grade"][~aggressive].mean()


def test_prevalences_and_exclusivity_follow_the_design(large_sim: SimulatedCohort) -> None:
    observed = large_sim.truth["observed_prevalence"]
    assert large_sim.truth["target_prevalence"] == TARGET_PREVALENCE
    assert all(abs(observed[d] - TARGET_PREVALENCE[d]) < 0.03 for d in SEED_DRIVERS)
    drivers = large_sim.cohort.drivers
    assert drivers[list(ETS_FUSIONS)].sum(axis=1).max() == 1
    assert not ((drivers["SPOP"] == 1) & (drivers[list(ETS_FUSIONS)].sum(axis=1) == 1)).any()
    erg = drivers["ERG"] == 1
    assert drivers["PTEN"][erg].mean() > 2 * drivers["PTEN"][~erg].mean()
    assert drivers["CHD1"][drivers["SPOP"] == 1].mean() > 2 * drivers["CHD1"][drivers["SPOP"] == 0].mean()


def test_knockout_truth_is_exactly_zero_for_zero_effect_drivers(default_sim: SimulatedCohort) -> None:
    table = default_sim.knockout_effects
    assert len(table) == len(SEED_DRIVERS) * 8
    zero = table[table["driver"].isin(ZERO_EFFECT_DRIVERS) & (table["n_carriers"] > 0)]
    assert not zero.empty and zero["zero_effect"].all()
    assert (zero[["effect_rms_pc", "effect_rms_raw", "effect_std"]] == 0.0).all().all()
    effect_rna = table[~table["zero_effect"] & (table["n_carriers"] > 0) & (table["layer"] == "rna")]
    assert len(effect_rna) == len(SEED_DRIVERS) - len(ZERO_EFFECT_DRIVERS)
    assert (effect_rna[["effect_rms_pc", "effect_rms_raw", "effect_std"]] > 0).all().all()
    assert (table.loc[table["layer"] == "methyl", "effect_rms_pc"].dropna() == 0.0).all()  # independent PTM
    absent = table[table["n_carriers"] == 0]
    assert absent[["effect_rms_pc", "effect_rms_raw", "effect_std"]].isna().all().all()


def test_strong_drivers_move_rna_more_than_weak_ones(large_sim: SimulatedCohort) -> None:
    rna = large_sim.knockout_effects.query("layer == 'rna'").set_index("driver")["effect_rms_pc"]
    assert rna[["ERG", "PTEN", "TP53", "MYC"]].min() > rna[["ETV4", "CDK12", "BRAF"]].max()


@pytest.mark.parametrize("leader", ["acetyl", "phospho"])
def test_the_configured_leader_predicts_the_metabolome_best(
    sims_600: dict[str, SimulatedCohort], leader: str
) -> None:
    sim = sims_600[leader]
    metabolome = pcs(sim, "metabolome")
    r2 = {ptm: cv_r2(pcs(sim, ptm), metabolome) for ptm in SEED_PTMS}
    assert max(r2, key=r2.get) == leader
    assert r2[leader] > max(v for k, v in r2.items() if k != leader) + 0.1
    assert sim.truth["leader"] == leader and sim.layer_truth.set_index("layer")["is_leader"].sum() == 1


def test_py_depends_on_phospho_and_methyl_on_nothing(sims_600: dict[str, SimulatedCohort]) -> None:
    sim = sims_600["acetyl"]
    py_from_phospho = cv_r2(pcs(sim, "phospho"), pcs(sim, "pY"))
    methyl_from_others = cv_r2(pcs(sim, "pY", "acetyl", "ubiq", "phospho"), pcs(sim, "methyl"))
    assert py_from_phospho > 0.4 and methyl_from_others < 0.12
    dependency = sim.layer_truth.set_index("layer")["ptm_dependency_r2"]
    assert dependency["pY"] > dependency["acetyl"] > dependency["methyl"]
    assert sim.truth["ptm_parents"]["pY"] == ["phospho"] and sim.truth["ptm_parents"]["methyl"] == []


def test_ceilings_are_ordered_fractions(default_sim: SimulatedCohort) -> None:
    layers = default_sim.layer_truth.set_index("layer")
    assert layers["noise_ceiling"].between(0, 1, inclusive="neither").all()
    assert (layers["genomics_ceiling"] < layers["noise_ceiling"]).all()
    assert layers.loc["rna", "genomics_ceiling"] > 0.05
    assert layers.loc[["rna", "protein", "metabolome"], "ptm_dependency_r2"].isna().all()
    assert layers.loc[list(SEED_PTMS), "ptm_dependency_r2"].between(0, 1).all()
    recorded = default_sim.truth["layers"]["rna"]
    assert recorded["noise_ceiling"] == layers.loc["rna", "noise_ceiling"]
    assert recorded["ptm_dependency_r2"] is None


def test_the_world_does_not_depend_on_the_number_of_patients() -> None:
    """Generative parameters come from their own random stream: PTM site names are drawn there."""

    def sites(config: SimulationConfig) -> list[str]:
        layers = simulate_cohort(config).cohort.layers
        return [site for ptm in SEED_PTMS for site in layers[ptm].loadings.columns]

    assert sites(SimulationConfig(n_patients=40)) == sites(SimulationConfig(n_patients=80))
    assert sites(SimulationConfig(n_patients=40)) != sites(SimulationConfig(n_patients=40, seed=1))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_patients", 1),
        ("n_patients", 10.5),
        ("leader", "sumo"),
        ("ptm_noise_sd", -0.1),
        ("strong_effect", float("nan")),
        ("unknown_grade_fraction", 1.0),
        ("monte_carlo_draws", 0),
        ("n_rna_features", 5),
        ("seed", True),
        ("nonlinearity", -0.5),
        ("nonlinearity", float("nan")),
        ("nonlinearity", float("inf")),
    ],
)
def test_invalid_config_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"SimulationConfig field '{field}' must be "):
        SimulationConfig(**{field: value})


def test_layer_truth_table_columns(default_sim: SimulatedCohort) -> None:
    expected = ["layer", "role", "noise_ceiling", "genomics_ceiling", "ptm_dependency_r2", "is_leader"]
    assert list(default_sim.layer_truth.columns) == expected
    assert isinstance(default_sim.knockout_effects, pd.DataFrame)
    assert list(default_sim.knockout_effects.columns) == [
        "driver",
        "layer",
        "n_carriers",
        "zero_effect",
        "effect_rms_pc",
        "effect_rms_raw",
        "effect_std",
    ]


SMALL = SimulationConfig(n_patients=60, n_components=5, monte_carlo_draws=10)


def flow(nonlinearity: float) -> Simulator:
    config = replace(SMALL, nonlinearity=nonlinearity)
    return Simulator(config, draw_world(config, np.random.default_rng(0)))


def test_nonlinearity_zero_is_the_original_cohort_and_other_values_keep_the_world() -> None:
    implicit, explicit = simulate_cohort(SMALL), simulate_cohort(replace(SMALL, nonlinearity=0.0))
    assert explicit.cohort.equals(implicit.cohort) and explicit.truth == implicit.truth
    pd.testing.assert_frame_equal(explicit.knockout_effects, implicit.knockout_effects)
    pd.testing.assert_frame_equal(explicit.layer_truth, implicit.layer_truth)
    assert "nonlinearity" not in implicit.truth and "nonlinearity" not in implicit.truth["config"]
    bent = simulate_cohort(replace(SMALL, nonlinearity=2.0))  # same patients, same world, another flow
    assert bent.cohort.drivers.equals(implicit.cohort.drivers)
    assert bent.cohort.clinical.equals(implicit.cohort.clinical)
    sites = [list(sim.cohort.layers["acetyl"].loadings.columns) for sim in (bent, implicit)]
    assert sites[0] == sites[1]
    assert not np.allclose(bent.cohort.layers["rna"].values, implicit.cohort.layers["rna"].values)
    assert bent.truth["config"]["nonlinearity"] == 2.0 and bent.truth["nonlinearity"]["value"] == 2.0
    assert bent.truth["nonlinearity"]["driver_pairs"] == [list(pair) for pair in NONLINEAR_PAIRS]
    assert bent.truth["interaction"]["effect"] == 3.0 * SMALL.interaction_effect
    table = bent.knockout_effects  # knockouts re-run the bent flow: zero-effect drivers still change nothing
    zero = table[table["zero_effect"] & (table["n_carriers"] > 0)]
    assert not zero.empty and (zero[["effect_rms_pc", "effect_rms_raw"]] == 0.0).all().all()


def genotype_expectations(nonlinearity: float, draws_per_genotype: int = 400) -> dict[str, np.ndarray]:
    """Per layer: E[state | genotype] on every allowed genotype of the strong drivers (Gleason 7), estimated
    twice from independent halves of the Monte Carlo draws: genotypes x 2 x state size."""
    combos = [
        c
        for c in itertools.product((0, 1), repeat=len(STRONG_DRIVERS))
        if not (c[STRONG_DRIVERS.index("ERG")] and c[STRONG_DRIVERS.index("SPOP")])
    ]
    genotypes = np.zeros((len(combos), len(SEED_DRIVERS)), dtype=np.int64)
    genotypes[:, [SEED_DRIVERS.index(d) for d in STRONG_DRIVERS]] = combos
    repeated = np.repeat(genotypes, draws_per_genotype, axis=0)
    draws = draw_patients(SMALL, len(repeated), np.random.default_rng(1), measured=False)
    states = flow(nonlinearity).states(repeated, np.full(len(repeated), 7), draws)
    halves = (len(combos), 2, draws_per_genotype // 2, -1)
    return {k: states[k].reshape(halves).mean(axis=2) for k in TARGETS} | {"genotypes": np.array(combos)}


@pytest.fixture(scope="module")
def genotype_means() -> dict[float, dict[str, np.ndarray]]:
    return {nonlinearity: genotype_expectations(nonlinearity) for nonlinearity in (0.0, 2.0)}


@pytest.mark.parametrize("layer", TARGETS)
def test_nonlinearity_makes_the_expectation_given_the_genome_non_additive(
    genotype_means: dict[float, dict[str, np.ndarray]], layer: str
) -> None:
    """The best linear (additive) fit of E[state | strong drivers] falls; genotype means stay reproducible."""
    fits = {}
    for nonlinearity, expected in genotype_means.items():
        halves, genotypes = expected[layer], expected["genotypes"]
        mean = halves.mean(axis=1)
        linear = LinearRegression().fit(genotypes, mean).predict(genotypes)
        reproduced = r2_score(halves[:, 1], halves[:, 0], multioutput="variance_weighted")
        fits[nonlinearity] = (r2_score(mean, linear, multioutput="variance_weighted"), reproduced)
    (linear_0, flexible_0), (linear_2, flexible_2) = fits[0.0], fits[2.0]
    assert linear_0 > 0.85 and linear_2 < linear_0 - 0.25
    assert min(flexible_0, flexible_2) > 0.85  # one half's genotype means predict the other's


def test_nonlinearity_saturates_every_layer_given_its_parents() -> None:
    """E[layer | parent states] is the link itself: its best linear fit on the parents falls."""
    r2 = {}
    for nonlinearity in (0.0, 2.0):
        rng = np.random.default_rng(1)
        drivers = draw_drivers(4000, rng)
        draws = draw_patients(SMALL, len(drivers), rng, measured=False)
        sim = flow(nonlinearity)
        states = sim.states(drivers, draw_gleason(drivers, rng), draws)
        parents = {"protein": states["rna"], "metabolome": np.hstack([states[k] for k in SEED_PTMS])}
        for layer, inputs in parents.items():
            expected = states[layer] - SMALL.private_sd_of(layer) * draws.private[layer]
            linear = LinearRegression().fit(inputs, expected).predict(inputs)
            r2[layer, nonlinearity] = r2_score(expected, linear, multioutput="variance_weighted")
    for layer in ("protein", "metabolome"):
        assert r2[layer, 0.0] > 0.88 and r2[layer, 2.0] < r2[layer, 0.0] - 0.1
