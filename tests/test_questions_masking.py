"""Q5 PTM dependency and Q6 storm leader: scored against the true held-out values, on planted structure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SMALL_MODEL, folds_around, identity_scaler
from sklearn.metrics import r2_score
from torch import nn

from lpmlib.cohort import Cohort, Layer
from lpmlib.cv import run_cv
from lpmlib.model import LPMOutput
from lpmlib.questions import not_written_path
from lpmlib.questions.masking import Q5_TABLES, pooled_r2, q5_ptm_dependency, q6_storm_leader
from lpmlib.train import TrainSettings
from lpmlib.workflow import RunFolder

PTMS = ("source", "copy", "independent")


def planted_cohort(
    n: int = 150, k: int = 2, seed: int = 0, endpoint_from: str = "independent", linear: bool = False
) -> Cohort:
    """PTM `copy` is an exact copy of PTM `source`; `independent` is independent Gaussian noise; the
    metabolome is a nonlinear function of `endpoint_from` alone (`linear`: that layer itself), plus a
    little noise. Drivers are random."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"P{i:03d}" for i in range(n)], name="case_id")
    source, independent = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    mixing = rng.normal(size=(k, k)) / np.sqrt(k)
    parent = {"independent": independent, "source": source}[endpoint_from]
    metabolome = (parent if linear else 2 * np.tanh(parent @ mixing)) + 0.1 * rng.normal(size=(n, k))
    values = {"metabolome": metabolome, "source": source, "copy": source.copy(), "independent": independent}
    layers = {
        name: Layer(
            name,
            "target" if name == "metabolome" else "ptm",
            pd.DataFrame(v, index=ids, columns=[f"{name}_{j}" for j in range(k)]),
        )
        for name, v in values.items()
    }
    drivers = pd.DataFrame((rng.random((n, 3)) < 0.3).astype(int), index=ids, columns=["A", "B", "C"])
    return Cohort(pd.DataFrame({"grade": rng.integers(1, 5, n)}, index=ids), drivers, layers)


class Coupled(nn.Module):
    """A module with the LPM's forward signature: each PTM is predicted as the sum of the OBSERVED PTM
    layers coupled to it, plus half its own value when that is observed (so a leak of a masked layer
    would show), and the metabolome as the observed `independent` layer; a masked layer (or one the cohort
    lacks) counts as 0."""

    coupling = {"source": ["copy"], "copy": ["source"], "independent": []}

    def __init__(self, ptm_names: list[str]) -> None:
        super().__init__()
        self.ptm_names = ptm_names

    def forward(self, drivers, grade, ptms, ptm_mask) -> LPMOutput:
        visible = {p: torch.where(ptm_mask[:, i : i + 1], ptms[p], 0.0) for i, p in enumerate(self.ptm_names)}
        zero = torch.zeros_like(next(iter(visible.values())))
        coupled = {p: sum((visible.get(q, zero) for q in self.coupling[p]), zero) for p in self.ptm_names}
        predictions = {p: coupled[p] + 0.5 * visible[p] for p in self.ptm_names}
        predictions["metabolome"] = visible.get("independent", zero)
        n = drivers.shape[0]
        return LPMOutput(predictions, zero, zero, {}, {}, zero, zero, torch.zeros(n, 1, 1))


class SourceOrCopy(Coupled):
    """As `Coupled`, but the metabolome is predicted from `source` where it is observed, else from `copy`
    (the same values): two layers that carry exactly the same information about the endpoint."""

    def forward(self, drivers, grade, ptms, ptm_mask) -> LPMOutput:
        output = super().forward(drivers, grade, ptms, ptm_mask)
        seen = {p: ptm_mask[:, i : i + 1] for i, p in enumerate(self.ptm_names)}
        from_copy = torch.where(seen["copy"], ptms["copy"], 0.0)
        output.predictions["metabolome"] = torch.where(seen["source"], ptms["source"], from_copy)
        return output


def with_layers(cohort: Cohort, names: tuple[str, ...]) -> Cohort:
    """The cohort with only the named layers."""
    return Cohort(cohort.clinical, cohort.drivers, {name: cohort.layers[name] for name in names})


def coupled_folds(cohort: Cohort, module_type: type = Coupled) -> list:
    module = module_type(cohort.ptm_names)
    return [dataclasses.replace(f, scaler=identity_scaler(cohort)) for f in folds_around(module, cohort)]


def held_out(cohort: Cohort, layer: str, fold) -> np.ndarray:
    return cohort.layers[layer].values.to_numpy()[fold.test_rows]


# ---------------------------------------------------------------------------------------------
# Exact values with a hand-built module (no training)


def test_q5_scores_masked_predictions_against_the_true_values() -> None:
    cohort = planted_cohort(n=60)
    folds = coupled_folds(cohort)
    answer = q5_ptm_dependency(folds)
    dependency = answer["q5_dependency_per_fold"].set_index(["ptm", "fold"])
    pairs = answer["q5_pair_matrix_per_fold"].set_index(["ptm", "also_masked", "fold"])
    for fold in folds:
        k, truth = fold.fold, held_out(cohort, "copy", fold)
        nothing = r2_score(truth, np.zeros_like(truth), multioutput="variance_weighted")
        assert dependency.loc[("copy", k), "r2_from_rest"] == pytest.approx(1.0)
        assert dependency.loc[("copy", k), "r2_genomics_only"] == pytest.approx(nothing)
        assert pairs.loc[("copy", "source", k), "r2"] == pytest.approx(nothing)
        assert pairs.loc[("copy", "source", k), "r2_lost"] == pytest.approx(1.0 - nothing)
        assert pairs.loc[("copy", "independent", k), "r2_lost"] == pytest.approx(0.0)
    assert dependency["n_patients"].groupby("fold").first().sum() == cohort.n_patients
    assert len(answer["q5_pair_matrix_summary"]) == len(PTMS) * (len(PTMS) - 1)


def test_q6_scores_the_endpoint_against_its_true_values() -> None:
    cohort = planted_cohort(n=60)
    folds = coupled_folds(cohort)
    per_fold = q6_storm_leader(folds)["q6_leader_per_fold"].set_index(["ptm", "fold"])
    for fold in folds:
        truth = held_out(cohort, "metabolome", fold)
        kept = r2_score(truth, held_out(cohort, "independent", fold), multioutput="variance_weighted")
        nothing = r2_score(truth, np.zeros_like(truth), multioutput="variance_weighted")
        row = per_fold.loc[("independent", fold.fold)]
        assert row["r2_only"] == pytest.approx(kept) and row["r2_all"] == pytest.approx(kept)
        assert row["r2_genomics_only"] == pytest.approx(nothing)
        assert row["loo_drop"] == pytest.approx(kept - nothing)
        assert per_fold.loc[("copy", fold.fold), "r2_only"] == pytest.approx(nothing)


def test_q6_names_the_one_layer_that_adds_beyond_genomics_and_tests_each_gain() -> None:
    cohort = planted_cohort(n=90, linear=True)
    answer = q6_storm_leader(coupled_folds(cohort))
    leader = answer["q6_leader"].set_index("ptm")
    assert leader.index[0] == "independent" and leader["is_leader"].tolist() == [True, False, False]
    assert leader.loc["independent", "gain_p_adjusted"] < 0.05 and leader.loc["independent", "ci_low"] > 0
    # the copy and its source predict the endpoint no better than genomics alone: no gain, nothing to test
    assert (leader.loc[["source", "copy"], "mean_gain"] == 0).all()
    assert (leader.loc[["source", "copy"], "gain_p_value"] == 1).all()
    verdict = answer["q6_verdict"].iloc[0]
    assert verdict["leader"] == "independent" and verdict["sentence"].startswith("independent leads")


def test_q6_names_no_single_leader_between_two_exact_copies() -> None:
    cohort = planted_cohort(n=90, endpoint_from="source", linear=True)
    answer = q6_storm_leader(coupled_folds(cohort, SourceOrCopy))
    leader = answer["q6_leader"].set_index("ptm")
    assert set(leader.index[:2]) == {"source", "copy"} and not leader["is_leader"].any()
    assert (leader.loc[["source", "copy"], "gain_p_adjusted"] < 0.05).all()  # both gain, equally
    verdict = answer["q6_verdict"].iloc[0]
    assert verdict["leader"] == "" and set(verdict["not_separated"].split(";")) == {"source", "copy"}
    assert verdict["sentence"].startswith("No single PTM layer leads")


def test_q5_tests_each_gain_over_genomics_and_each_pair_loss() -> None:
    cohort = planted_cohort(n=90)
    answer = q5_ptm_dependency(coupled_folds(cohort))
    gain = answer["q5_dependency_gain"].set_index("ptm")
    coupled = gain.loc[["source", "copy"]]
    assert (coupled["gain_p_adjusted"] < 0.05).all() and (coupled["mean"] > 0.5).all()
    pairs = answer["q5_pair_matrix_summary"].set_index(["ptm", "also_masked"])
    assert pairs.loc[("copy", "source"), "gain_p_adjusted"] < 0.05
    assert pairs.loc[("copy", "independent"), "gain_p_value"] == 1  # masking it too changes nothing


def test_undefined_r2_is_nan_with_a_reason() -> None:
    cohort = planted_cohort(n=60)
    fold = coupled_folds(cohort)[0]
    one_patient = dataclasses.replace(fold, test_rows=fold.test_rows[:1])
    for table in (
        q5_ptm_dependency([one_patient])["q5_dependency_per_fold"],
        q5_ptm_dependency([one_patient])["q5_pair_matrix_per_fold"],
        q6_storm_leader([one_patient])["q6_leader_per_fold"],
    ):
        assert (
            table.select_dtypes("number")
            .drop(columns=["fold", "training_seed", "n_patients"])
            .isna()
            .all()
            .all()
        )
        assert table["note"].str.contains("fewer than 2 held-out patients").all()
    constant = np.ones((5, 2))
    assert np.isnan(pooled_r2(constant, constant)[0]) and "constant" in pooled_r2(constant, constant)[1]


def test_an_unknown_or_ptm_endpoint_is_a_clear_error() -> None:
    cohort = planted_cohort(n=60)
    folds = coupled_folds(cohort)
    with pytest.raises(KeyError, match="metabolome") as error:
        q6_storm_leader(folds, endpoint="metabolite")
    assert "metabolite" in str(error.value)
    with pytest.raises(ValueError, match="target layer"):
        q6_storm_leader(folds, endpoint="copy")


def test_q5_is_not_asked_of_one_ptm_layer_and_leaves_no_table_behind(tmp_path) -> None:
    answer = q5_ptm_dependency(
        coupled_folds(with_layers(planted_cohort(n=60), ("metabolome", "independent")))
    )
    reason = "Q5 needs at least two PTM layers; this cohort has one (independent), so it is not asked."
    assert not answer.asked and answer.tables == {} and answer.headline["q5_sentence"] == reason
    assert answer.headline["q5_abstract"] == "" and answer.not_written == dict.fromkeys(Q5_TABLES, reason)
    run = RunFolder(tmp_path)
    run.save_table("q5_pair_matrix_summary", pd.DataFrame())  # the empty table of an earlier, failed run
    answer.publish(run)
    assert list((tmp_path / "tables").glob("*.csv")) == []
    assert all(not_written_path(tmp_path, name).read_text() == reason + "\n" for name in Q5_TABLES)
    asked = q5_ptm_dependency(coupled_folds(planted_cohort(n=60)))  # the same run folder, two PTM layers
    asked.save(run)
    assert asked.asked and sorted(p.stem for p in (tmp_path / "tables").iterdir()) == sorted(Q5_TABLES)
    assert (
        asked.headline["q5_abstract"]
        == f"Q5 asks what the other PTM layers add to each one: {asked.headline['q5_sentence']}"
    )


def test_q6_with_one_ptm_layer_reports_its_gain_and_its_test() -> None:
    cohort = with_layers(planted_cohort(n=90, linear=True), ("metabolome", "independent"))
    answer = q6_storm_leader(coupled_folds(cohort))
    row = answer["q6_leader"].iloc[0]
    assert row["ptm"] == "independent" and row["gain_p_adjusted"] < 0.05 and row["ci_low"] > 0
    verdict = answer["q6_verdict"].loc[0, "sentence"]
    assert verdict == answer.headline["q6_verdict"]
    assert verdict.startswith(f"independent adds {row['mean_gain']:+.3f} [")
    assert (
        "to the held-out R^2 of the metabolome beyond genomics" in verdict and "BH-adjusted p = " in verdict
    )
    assert answer.headline["q6_question"] == (
        "what the cohort's one PTM layer, independent, adds to the prediction of the metabolome"
    )
    nothing = q6_storm_leader(
        coupled_folds(with_layers(planted_cohort(n=90, linear=True), ("metabolome", "copy")))
    )
    assert nothing.headline["q6_verdict"].startswith("copy adds nothing detectable to the held-out R^2")
    assert q6_storm_leader(coupled_folds(planted_cohort(n=60))).headline["q6_question"] == (
        "which of the three PTM layers adds most to the prediction of the metabolome"
    )


# ---------------------------------------------------------------------------------------------
# A trained model recovers the planted structure


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """Three folds of the small model trained on the planted cohort for a fixed 10 epochs.

    The copy is linear, so the model's linear anchor learns it in closed form; the epochs give the deep
    path and each layer's read-out choice a run over the planted structure.
    """
    cohort = planted_cohort()
    settings = TrainSettings(epochs=10)
    folds = run_cv(cohort, tmp_path_factory.mktemp("planted"), settings, n_folds=3, log=None, **SMALL_MODEL)
    return cohort, folds, q5_ptm_dependency(folds), q6_storm_leader(folds)


def test_q5_predicts_the_copy_from_the_rest_and_not_the_independent_layer(planted_run) -> None:
    _, folds, answer, _ = planted_run
    per_fold = answer["q5_dependency_per_fold"].set_index(["ptm", "fold"])["r2_from_rest"]
    summary = answer["q5_dependency_summary"].set_index(["ptm", "metric"])["mean"]
    assert summary[("copy", "r2_from_rest")] > 0.6
    assert all(per_fold[("copy", f.fold)] > 0.5 for f in folds)
    assert all(per_fold[("independent", f.fold)] < 0.1 for f in folds)


def test_q5_pair_matrix_shows_the_copy_depends_on_its_source(planted_run) -> None:
    _, folds, answer, _ = planted_run
    lost = answer["q5_pair_matrix_per_fold"].set_index(["ptm", "also_masked", "fold"])["r2_lost"]
    for fold in folds:
        assert lost[("copy", "source", fold.fold)] > 0.5
        assert abs(lost[("copy", "independent", fold.fold)]) < 0.15
        assert abs(lost[("independent", "source", fold.fold)]) < 0.15
    summary = answer["q5_pair_matrix_summary"].set_index(["ptm", "also_masked"])["mean"]
    assert summary[("copy", "source")] == summary.loc["copy"].max()


def test_q6_finds_the_layer_the_metabolome_depends_on(planted_run) -> None:
    _, folds, _, answer = planted_run
    leader = answer["q6_leader"].set_index("ptm")
    assert leader.index[0] == "independent" and leader.loc["independent", "is_leader"]
    assert leader["is_leader"].sum() == 1
    assert leader.loc["independent", "n_folds_top"] >= len(folds) - 1
    per_fold = answer["q6_leader_per_fold"]
    mine = per_fold[per_fold["ptm"] == "independent"]
    assert (mine["r2_only"] - mine["r2_genomics_only"] > 0.3).all() and (mine["loo_drop"] > 0.3).all()


# ---------------------------------------------------------------------------------------------
# On the shared simulated folds: every held-out patient, the stored predictions reused


def test_q5_q6_tables_on_simulated_folds(small_sim, small_folds) -> None:
    cohort = small_sim.cohort
    q5, q6 = q5_ptm_dependency(small_folds), q6_storm_leader(small_folds)
    dependency, leader = q5["q5_dependency_per_fold"], q6["q6_leader_per_fold"]
    assert list(dependency.columns) == [
        "ptm",
        "fold",
        "training_seed",
        "r2_from_rest",
        "r2_genomics_only",
        "r2_gain_over_genomics",
        "n_patients",
        "note",
    ]
    assert list(leader.columns) == [
        "endpoint",
        "ptm",
        "fold",
        "training_seed",
        "r2_only",
        "r2_genomics_only",
        "r2_all",
        "r2_gain_over_genomics",
        "loo_drop",
        "n_patients",
        "note",
    ]
    for table in (dependency, leader):
        assert table.groupby("fold")["n_patients"].first().sum() == cohort.n_patients
        assert table.drop(columns="note").notna().all().all() and (table["note"] == "").all()
    fold = small_folds[0]
    stored = fold.predictions["without_methyl"]["methyl"]
    expected = r2_score(held_out(cohort, "methyl", fold), stored, multioutput="variance_weighted")
    row = dependency[(dependency["ptm"] == "methyl") & (dependency["fold"] == fold.fold)]
    assert row["r2_from_rest"].item() == pytest.approx(expected)
    leaders = q6["q6_leader"]
    assert len(leaders) == len(cohort.ptm_names) and leaders["n_folds_top"].sum() == len(small_folds)
