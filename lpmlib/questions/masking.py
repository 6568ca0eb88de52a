"""Q5 PTM dependency and Q6 storm leader: what masking PTM layers does to held-out R^2.

Both questions score the model's masked predictions against the TRUE held-out values of a layer
(original units), pooled over all held-out patients of a fold and variance-weighted. A masked layer
is hidden from every part of the model, so a PTM layer predicted "from the rest" never sees itself.
Predictions come from those `run_cv` stored for each fold (patterns "all", "genomics_only",
"without_<ptm>", "only_<ptm>"); a fold without them (e.g. built around a hand-made model) has them
computed by `perturb.predict_masked`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score

from lpmlib.cohort import Cohort
from lpmlib.cv import FoldResult
from lpmlib.model import masking_patterns
from lpmlib.perturb import Outputs, observed_held_out, predict_masked
from lpmlib.questions import Answer
from lpmlib.stats import summarise_folds

Scored = tuple[float, str]  # an R^2 and the reason it is NaN ("" when defined)
PAIR_COLUMNS = ["ptm", "also_masked", "fold", "r2", "r2_lost", "n_patients", "note"]


def pooled_r2(truth: np.ndarray, predicted: np.ndarray) -> Scored:
    """Variance-weighted R^2 pooled over patients; NaN with the reason where it is undefined."""
    if len(truth) < 2:
        return np.nan, "fewer than 2 held-out patients"
    if not np.any(truth.var(axis=0) > 0):
        return np.nan, "held-out values are constant"
    if not np.isfinite(predicted).all():
        return np.nan, "non-finite predictions"
    return float(r2_score(truth, predicted, multioutput="variance_weighted")), ""


def masked_layers(pattern: str, ptm_names: list[str]) -> list[str]:
    """The PTM layers a named masking pattern hides (see `lpmlib.model.masking_patterns`)."""
    patterns = masking_patterns(ptm_names)
    if pattern not in patterns:
        raise KeyError(f"unknown masking pattern {pattern!r}; known: {', '.join(patterns)}")
    return [name for name, seen in zip(ptm_names, patterns[pattern].tolist()) if not seen]


def pattern_prediction(cohort: Cohort, fold: FoldResult, pattern: str, layer: str) -> np.ndarray:
    """Held-out prediction of `layer` under a named pattern: stored by `run_cv`, else computed."""
    stored = fold.predictions.get(pattern, {})
    if layer in stored:
        return stored[layer]
    return predict_masked(cohort, fold, masked_layers(pattern, cohort.ptm_names))[layer]


def score_pattern(cohort: Cohort, fold: FoldResult, pattern: str, layer: str) -> Scored:
    """R^2 of the prediction of `layer` under `pattern` against its true held-out values."""
    return pooled_r2(observed_held_out(cohort, fold, layer), pattern_prediction(cohort, fold, pattern, layer))


def join_notes(*notes: str) -> str:
    """The distinct non-empty reasons, in order."""
    return "; ".join(dict.fromkeys(n for n in notes if n))


def difference(a: Scored, b: Scored) -> Scored:
    """a - b, NaN with both reasons when either is undefined."""
    return a[0] - b[0], join_notes(a[1], b[1])


def scored_row(keys: dict, scores: dict[str, Scored], fold: FoldResult) -> dict:
    """One per-fold row: identifying keys, the scores' values, the patients and every reason for a NaN."""
    values = {name: value for name, (value, _) in scores.items()}
    note = join_notes(*(reason for _, reason in scores.values()))
    return {**keys, "fold": fold.fold, **values, "n_patients": len(fold.test_rows), "note": note}


def long_summary(per_fold: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Cross-fold mean, 95% interval and per-fold values of several per-fold columns, one row per metric."""
    long = per_fold.melt(id_vars=[*by, "fold"], value_vars=metrics, var_name="metric")
    return summarise_folds(long, by=[*by, "metric"], value="value")


# ---------------------------------------------------------------------------------------------
# Q5: PTM dependency


def dependency_rows(cohort: Cohort, fold: FoldResult) -> list[dict]:
    """Per PTM layer: R^2 when masked and predicted from the other PTM layers, and from genomics only."""
    rows = []
    for ptm in cohort.ptm_names:
        from_rest = score_pattern(cohort, fold, f"without_{ptm}", ptm)
        floor = score_pattern(cohort, fold, "genomics_only", ptm)
        scores = {"r2_from_rest": from_rest, "r2_genomics_only": floor,
                  "r2_gain_over_genomics": difference(from_rest, floor)}  # fmt: skip
        rows.append(scored_row({"ptm": ptm}, scores, fold))
    return rows


def pair_predictions(cohort: Cohort, fold: FoldResult) -> dict[frozenset[str], Outputs]:
    """Held-out outputs with each unordered pair of PTM layers masked (one forward pass per pair)."""
    names = cohort.ptm_names
    pairs = {frozenset((p, q)) for p in names for q in names if p != q}
    return {pair: predict_masked(cohort, fold, sorted(pair)) for pair in pairs}


def pair_rows(cohort: Cohort, fold: FoldResult) -> list[dict]:
    """Per ordered pair (p, q): R^2 of p with p and q masked, and the R^2 of p lost by masking q too."""
    outputs = pair_predictions(cohort, fold)
    rows = []
    for ptm in cohort.ptm_names:
        truth = observed_held_out(cohort, fold, ptm)
        from_rest = score_pattern(cohort, fold, f"without_{ptm}", ptm)
        for other in (q for q in cohort.ptm_names if q != ptm):
            both = pooled_r2(truth, outputs[frozenset((ptm, other))][ptm])
            scores = {"r2": both, "r2_lost": difference(from_rest, both)}
            rows.append(scored_row({"ptm": ptm, "also_masked": other}, scores, fold))
    return rows


def q5_ptm_dependency(cohort: Cohort, folds: list[FoldResult]) -> Answer:
    """How well each PTM layer is predicted from the others, and which other layer it depends on.

    Tables: `q5_dependency_per_fold` (R^2 of each masked PTM from the rest and from genomics only),
    `q5_dependency_summary`, `q5_pair_matrix_per_fold` (R^2 of p with p and q masked; r2_lost =
    R^2(without p) - R^2(without p and q), what q contributes to predicting p) and
    `q5_pair_matrix_summary` (r2_lost across folds).
    """
    dependency = pd.DataFrame([row for fold in folds for row in dependency_rows(cohort, fold)])
    pairs = pd.DataFrame([row for fold in folds for row in pair_rows(cohort, fold)], columns=PAIR_COLUMNS)
    metrics = ["r2_from_rest", "r2_genomics_only", "r2_gain_over_genomics"]
    return Answer({
        "q5_dependency_per_fold": dependency,
        "q5_dependency_summary": long_summary(dependency, ["ptm"], metrics),
        "q5_pair_matrix_per_fold": pairs,
        "q5_pair_matrix_summary": summarise_folds(pairs, by=["ptm", "also_masked"], value="r2_lost"),
    })  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Q6: storm leader


def check_endpoint(cohort: Cohort, endpoint: str) -> None:
    """The endpoint must be a target layer: a PTM layer is a model input and would predict itself."""
    if endpoint not in cohort.layers:
        raise KeyError(f"unknown endpoint layer {endpoint!r}; valid layers: {', '.join(cohort.layers)}")
    if endpoint not in cohort.target_names:
        targets = ", ".join(cohort.target_names) or "(none in this cohort)"
        raise ValueError(f"endpoint {endpoint!r} is a PTM input layer; choose a target layer: {targets}")


def leader_rows(cohort: Cohort, fold: FoldResult, endpoint: str) -> list[dict]:
    """Per PTM layer: R^2 of the endpoint with only that layer kept, the floor, ceiling and LOO drop."""
    floor = score_pattern(cohort, fold, "genomics_only", endpoint)
    ceiling = score_pattern(cohort, fold, "all", endpoint)
    rows = []
    for ptm in cohort.ptm_names:
        only = score_pattern(cohort, fold, f"only_{ptm}", endpoint)
        without = score_pattern(cohort, fold, f"without_{ptm}", endpoint)
        scores = {"r2_only": only, "r2_genomics_only": floor, "r2_all": ceiling,
                  "r2_gain_over_genomics": difference(only, floor),
                  "loo_drop": difference(ceiling, without)}  # fmt: skip
        rows.append(scored_row({"endpoint": endpoint, "ptm": ptm}, scores, fold))
    return rows


def leader_table(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Per PTM layer, best first: mean r2_only, the folds where it is the top layer, and the leader flag."""
    ranked = per_fold.dropna(subset=["r2_only"])
    tops = ranked.loc[ranked.groupby("fold")["r2_only"].idxmax(), "ptm"].value_counts()
    table = per_fold.groupby(["endpoint", "ptm"], sort=False).agg(
        mean_r2_only=("r2_only", "mean"), n_folds_scored=("r2_only", "count")
    )
    table["n_folds_top"] = tops.reindex(table.index.get_level_values("ptm"), fill_value=0).to_numpy(dtype=int)
    table["fraction_folds_top"] = table["n_folds_top"] / per_fold["fold"].nunique()
    table = table.sort_values("mean_r2_only", ascending=False, na_position="last").reset_index()
    table["is_leader"] = (table.index == 0) & table["mean_r2_only"].notna()
    return table


def q6_storm_leader(cohort: Cohort, folds: list[FoldResult], endpoint: str = "metabolome") -> Answer:
    """Which single PTM layer carries most of the information about the endpoint (the storm leader).

    Tables: `q6_leader_per_fold` (R^2 of the endpoint with one PTM kept, the genomics-only floor, the
    all-PTM ceiling and the leave-one-out drop R^2(all) - R^2(without p)), `q6_leader_summary` and
    `q6_leader` (the layer with the highest mean r2_only, and how often each layer is the top one).
    """
    check_endpoint(cohort, endpoint)
    per_fold = pd.DataFrame([row for fold in folds for row in leader_rows(cohort, fold, endpoint)])
    metrics = ["r2_only", "r2_genomics_only", "r2_all", "r2_gain_over_genomics", "loo_drop"]
    return Answer({
        "q6_leader_per_fold": per_fold,
        "q6_leader_summary": long_summary(per_fold, ["endpoint", "ptm"], metrics),
        "q6_leader": leader_table(per_fold),
    })  # fmt: skip
