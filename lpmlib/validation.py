"""How well the questions recover the planted truth of a simulated cohort.

- Driver rankings (Q1 storm intensity, Q3 attributions, Q4 resistance): AUROC of effect drivers
  against the drivers planted with zero effect.
- Knockout effects (Q1): Spearman correlation of the estimated and the true shift per layer, over
  drivers with carriers; and how often the held-out effect test supports planted effects and null ones.
- PTM dependency (Q5): the estimated R^2 from the other layers beside the true dependency (none where the
  cohort has one PTM layer and Q5 was not asked).
- Storm leader (Q6): whether the planted leader is found, and in how many folds.
Undefined values are NaN with a reason, never 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from lpmlib.describe import listed
from lpmlib.questions import Answer, not_written_path


def ranking_auroc(scores: pd.Series, zero_effect: list[str]) -> tuple[float, int, str]:
    """AUROC of `scores` (driver -> score, higher = stronger) for effect vs zero-effect drivers."""
    scores = scores.dropna()
    labels = np.array([driver not in zero_effect for driver in scores.index])
    if labels.all() or not labels.any():
        return np.nan, len(scores), "needs both effect and zero-effect drivers with a score"
    return float(roc_auc_score(labels, scores.to_numpy())), len(scores), ""


def summary_scores(summary: pd.DataFrame, **selection: str) -> pd.Series:
    """The cross-fold mean per driver of the summary rows matching `selection` (column=value)."""
    rows = summary
    for column, value in selection.items():
        rows = rows[rows[column] == value]
    return rows.set_index("driver")["mean"]


def ranking_recovery(rankings: dict[str, pd.Series], zero_effect: list[str]) -> pd.DataFrame:
    """One row per ranking: its AUROC, the drivers it rests on, and why it is NaN when it is."""
    rows = []
    for name, scores in rankings.items():
        auroc, n_drivers, note = ranking_auroc(scores, zero_effect)
        rows.append({"ranking": name, "auroc": auroc, "n_drivers": n_drivers, "note": note})
    return pd.DataFrame(rows)


def knockout_recovery(
    q1_summary: pd.DataFrame, truth_knockout: pd.DataFrame, layer_truth: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per layer: Spearman correlation of estimated and true knockout shifts (PC units) over drivers, and
    (given `layer_truth`) the layer's planted genomics ceiling: the R^2 of its best genomics-only
    prediction, which bounds how far the drivers move it against its noise."""
    rows = []
    for layer, truth in truth_knockout.groupby("layer", sort=False):
        estimated = summary_scores(q1_summary, quantity="shift_rms", layer=layer)
        joined = pd.concat(
            [estimated.rename("estimated"), truth.set_index("driver")["effect_rms_pc"]], axis=1
        )
        joined = joined.dropna()
        note = ""
        if len(joined) < 3:
            rho, note = np.nan, "fewer than three drivers with an estimate and a truth"
        elif joined["effect_rms_pc"].nunique() == 1:
            rho, note = np.nan, "the true effect is the same for every driver (no driver moves this layer)"
        else:
            rho = float(spearmanr(joined["estimated"], joined["effect_rms_pc"]).statistic)
        rows.append({"layer": layer, "spearman": rho, "n_drivers": len(joined), "note": note})
    table = pd.DataFrame(rows)
    if layer_truth is not None:
        table.insert(3, "genomics_ceiling", table["layer"].map(layer_truth["genomics_ceiling"]))
    return table


def effect_test_recovery(effect_test: pd.DataFrame, truth_knockout: pd.DataFrame) -> pd.DataFrame:
    """Q1's held-out effect test against the truth: of the driver-layer effects it could test, how many it
    supports where the simulator planted an effect (its power) and where it planted none (its false
    positives)."""
    joined = effect_test.merge(truth_knockout[["driver", "layer", "effect_rms_pc"]], on=["driver", "layer"])
    joined = joined.dropna(subset=["gain_p_value"])
    joined["planted"] = np.where(joined["effect_rms_pc"] > 0, "effect", "no effect")
    table = joined.groupby("planted")["supported"].agg(n_tested="size", n_supported="sum")
    table = table.reindex(["effect", "no effect"], fill_value=0).astype(int)
    table["fraction_supported"] = table["n_supported"] / table["n_tested"].where(table["n_tested"] > 0)
    return table.rename_axis("planted").reset_index()


def dependency_recovery(q5_summary: pd.DataFrame | None, layer_truth: pd.DataFrame) -> pd.DataFrame:
    """Per PTM layer: Q5's R^2 from the other layers beside the planted dependency (an upper bound); no row
    when Q5 was not asked (`q5_summary` None)."""
    if q5_summary is None:
        return pd.DataFrame(columns=["ptm", "estimated_r2", "true_dependency_r2"])
    estimated = q5_summary[q5_summary["metric"] == "r2_from_rest"].set_index("ptm")["mean"]
    truth = layer_truth["ptm_dependency_r2"].dropna()
    table = pd.DataFrame({"estimated_r2": estimated, "true_dependency_r2": truth}).dropna()
    return table.rename_axis("ptm").reset_index()


def leader_recovery(q6_leader: pd.DataFrame, planted: str) -> dict[str, object]:
    """Whether Q6's leader is the planted one, and in how many folds the planted layer came first."""
    found = q6_leader.loc[q6_leader["is_leader"], "ptm"].tolist()
    planted_row = q6_leader[q6_leader["ptm"] == planted].iloc[0]
    return {
        "planted_leader": planted,
        "found_leader": found[0] if found else "no single leader",
        "found": bool(found and found[0] == planted),
        "n_folds_top": int(planted_row["n_folds_top"]),
        "n_folds": int(planted_row["n_folds_scored"]),
    }


TARGETS = {"auroc_q1": 0.9, "spearman_targets": 0.8}


def target_check(
    rankings: pd.DataFrame, effects: pd.DataFrame, leader: dict, target_layers: list[str]
) -> pd.DataFrame:
    """The recovery targets set for the default cohort, what was achieved, and whether it was met."""
    q1 = rankings.set_index("ranking").loc["q1_storm_intensity", "auroc"]
    spearman = effects.set_index("layer").loc[target_layers, "spearman"]
    rows = [
        ("Q1 all-driver ranking: AUROC >= 0.9", f"{q1:.2f}", bool(q1 >= TARGETS["auroc_q1"])),
        (
            "Q1 effects vs truth: Spearman >= 0.8 on every target layer",
            ", ".join(f"{layer} {rho:.2f}" for layer, rho in spearman.items()),
            bool((spearman >= TARGETS["spearman_targets"]).all()),
        ),
        (
            "Q6 finds the planted leader in every fold",
            f"{leader['n_folds_top']} of {leader['n_folds']} folds",
            bool(leader["found"] and leader["n_folds_top"] == leader["n_folds"]),
        ),
    ]
    return pd.DataFrame(rows, columns=["target", "achieved", "met"])


def targets_sentence(targets: pd.DataFrame | None) -> str:
    """The validation in one sentence for the abstract: how many targets were met and which were missed
    (`targets` as `target_check` makes it; None for a cohort with no planted truth)."""
    if targets is None:
        return "The cohort has no planted truth, so no answer is checked against one."
    missed = targets[~targets["met"].astype(bool)]
    met = len(targets) - len(missed)
    sentence = f"Checked against the planted truth, {met} of {len(targets)} validation targets were met"
    if len(missed):
        missed_list = "; ".join(f"{r.target} (achieved: {r.achieved})" for r in missed.itertuples())
        sentence += f"; missed: {missed_list}"
    return sentence + "."


def knockout_sentence(effects: pd.DataFrame, target_layers: list[str]) -> str:
    """The Spearman correlation of estimated and true knockout effects on each target layer, in words."""
    rho = effects.set_index("layer")["spearman"]
    return listed([f"{rho[layer]:.2f} ({layer})" for layer in target_layers if layer in rho.index])


QUESTION_TABLES = (
    "q1_knockout_summary",
    "q1_effect_test",
    "q3_attribution_summary",
    "q4_resistance_summary",
    "q5_dependency_summary",
    "q6_leader",
)  # what the validation reads


def read_question_tables(run) -> dict[str, pd.DataFrame]:
    """The `QUESTION_TABLES` of a run folder (a `lpmlib.workflow.RunFolder`), except those whose question
    recorded that it did not write them (it was not asked of this cohort)."""
    return {
        name: run.load_table(name, index_col=None)
        for name in QUESTION_TABLES
        if not not_written_path(run.path, name).is_file()
    }


def validate(
    tables: Mapping[str, pd.DataFrame], truth: dict, layer_truth: pd.DataFrame, truth_knockout: pd.DataFrame
) -> Answer:
    """Every recovery check of a simulated cohort's answers (`tables`: the question tables named in
    `QUESTION_TABLES`, Q5's left out where it was not asked) against its planted truth (`truth.json`, the
    layer and knockout truth tables).

    Tables: `validation_rankings`, `validation_knockout`, `validation_effect_test`, `validation_dependency`
    and `validation_targets`. Headline: each AUROC and Spearman (and `spearman_targets`, those of the target
    layers in words), the effect test's counts, the leader found, and the targets met.
    """
    q1 = tables["q1_knockout_summary"]
    rankings = ranking_recovery(
        {
            "q1_storm_intensity": summary_scores(q1, quantity="storm_intensity"),
            "q3_integrated_gradients": summary_scores(
                tables["q3_attribution_summary"], metric="ig_mean_carriers"
            ),
            "q3_saliency": summary_scores(tables["q3_attribution_summary"], metric="saliency_mean"),
            "q4_distance_fraction": summary_scores(
                tables["q4_resistance_summary"], quantity="distance_fraction_with_others"
            ),
        },
        truth["zero_effect_drivers"],
    )
    effects = knockout_recovery(q1, truth_knockout, layer_truth)
    effect_test = effect_test_recovery(tables["q1_effect_test"], truth_knockout)
    leader = leader_recovery(tables["q6_leader"], truth["leader"])
    target_layers = list(layer_truth.index[layer_truth["role"] == "target"])
    targets = target_check(rankings, effects, leader, target_layers)
    headline = {
        **{f"auroc_{row.ranking}": float(row.auroc) for row in rankings.itertuples()},
        **{f"spearman_{row.layer}": float(row.spearman) for row in effects.itertuples()},
        "spearman_targets": knockout_sentence(effects, target_layers),
        **{
            f"effect_test_supported_{row.planted.replace(' ', '_')}": int(row.n_supported)
            for row in effect_test.itertuples()
        },
        **{
            f"effect_test_tested_{row.planted.replace(' ', '_')}": int(row.n_tested)
            for row in effect_test.itertuples()
        },
        **{f"leader_{key}": value for key, value in leader.items()},
        "n_targets_met": int(targets["met"].sum()),
        "n_targets": len(targets),
    }
    answer_tables = {
        "validation_rankings": rankings,
        "validation_knockout": effects,
        "validation_effect_test": effect_test,
        "validation_dependency": dependency_recovery(tables.get("q5_dependency_summary"), layer_truth),
        "validation_targets": targets,
    }
    return Answer(answer_tables, headline)
