"""Q5 PTM dependency and Q6 storm leader: what masking PTM layers does to held-out R^2.

Both work on any number of PTM layers, but Q5 asks how one layer depends on the others: with a single PTM
layer it is not asked (its answer says why and writes no table). Q6 with a single PTM layer asks what that
layer adds to the endpoint beyond genomics.

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
from lpmlib.describe import counted, listed, number_word
from lpmlib.model import masking_patterns
from lpmlib.perturb import Outputs, observed_held_out, predict_masked
from lpmlib.questions import Answer, verdict_table
from lpmlib.stats import (
    ALPHA,
    SEED,
    Separation,
    gain_tests,
    model_keys,
    separate_best,
    squared_errors,
    summarise_folds,
    top_counts,
)

Scored = tuple[float, str]  # an R^2 and the reason it is NaN ("" when defined)
PAIR_COLUMNS = ["ptm", "also_masked", "fold", SEED, "r2", "r2_lost", "n_patients", "note"]
Q5_TABLES = (
    "q5_dependency_per_fold",
    "q5_dependency_summary",
    "q5_dependency_gain",
    "q5_pair_matrix_per_fold",
    "q5_pair_matrix_summary",
)


def pooled_r2(truth: np.ndarray, predicted: np.ndarray) -> Scored:
    """Variance-weighted R^2 pooled over patients; NaN with the reason where it is undefined."""
    if len(truth) < 2:
        return np.nan, "fewer than 2 held-out patients"
    if not np.any(truth.var(axis=0) > 0):
        return np.nan, "held-out values are constant"
    if not np.isfinite(predicted).all():
        return np.nan, "non-finite predictions"
    return float(r2_score(truth, predicted, multioutput="variance_weighted")), ""


def gain_units(keys: dict, fold: FoldResult, worse: np.ndarray, better: np.ndarray) -> pd.DataFrame:
    """Per held-out patient (`unit`): `worse` - `better` squared errors, the gain of the better prediction."""
    return pd.DataFrame({**keys, **fold.keys, "unit": fold.test_rows, "value": worse - better})


def masked_layers(pattern: str, ptm_names: list[str]) -> list[str]:
    """The PTM layers a named masking pattern hides (see `lpmlib.model.masking_patterns`)."""
    patterns = masking_patterns(ptm_names)
    if pattern not in patterns:
        raise KeyError(f"unknown masking pattern {pattern!r}; known: {', '.join(patterns)}")
    return [name for name, seen in zip(ptm_names, patterns[pattern].tolist()) if not seen]


def pattern_prediction(fold: FoldResult, pattern: str, layer: str) -> np.ndarray:
    """Held-out prediction of `layer` under a named pattern: stored by `run_cv`, else computed."""
    cohort = fold.cohort
    stored = fold.predictions.get(pattern, {})
    if layer in stored:
        return stored[layer]
    return predict_masked(fold, masked_layers(pattern, cohort.ptm_names))[layer]


def score_pattern(fold: FoldResult, pattern: str, layer: str) -> Scored:
    """R^2 of the prediction of `layer` under `pattern` against its true held-out values."""
    return pooled_r2(observed_held_out(fold, layer), pattern_prediction(fold, pattern, layer))


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
    return {**keys, **fold.keys, **values, "n_patients": len(fold.test_rows), "note": note}


def long_summary(per_fold: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Cross-fold mean, 95% interval and per-fold values of several per-fold columns, one row per metric."""
    long = per_fold.melt(id_vars=[*by, *model_keys(per_fold)], value_vars=metrics, var_name="metric")
    return summarise_folds(long, by=[*by, "metric"], value="value")


# ---------------------------------------------------------------------------------------------
# Q5: PTM dependency


def dependency_gains(fold: FoldResult) -> pd.DataFrame:
    """Per PTM layer and held-out patient: its squared error from genomics only minus that from the other
    layers (and genomics), what the other layers add beyond genomics."""
    cohort = fold.cohort
    gains = []
    for ptm in cohort.ptm_names:
        truth = observed_held_out(fold, ptm)
        floor = squared_errors(truth, pattern_prediction(fold, "genomics_only", ptm))
        rest = squared_errors(truth, pattern_prediction(fold, f"without_{ptm}", ptm))
        gains.append(gain_units({"ptm": ptm}, fold, floor, rest))
    return pd.concat(gains, ignore_index=True)


def dependency_rows(fold: FoldResult) -> list[dict]:
    """Per PTM layer: R^2 when masked and predicted from the other PTM layers, and from genomics only."""
    cohort = fold.cohort
    rows = []
    for ptm in cohort.ptm_names:
        from_rest = score_pattern(fold, f"without_{ptm}", ptm)
        floor = score_pattern(fold, "genomics_only", ptm)
        scores = {
            "r2_from_rest": from_rest,
            "r2_genomics_only": floor,
            "r2_gain_over_genomics": difference(from_rest, floor),
        }
        rows.append(scored_row({"ptm": ptm}, scores, fold))
    return rows


def pair_predictions(fold: FoldResult) -> dict[frozenset[str], Outputs]:
    """Held-out outputs with each unordered pair of PTM layers masked (one forward pass per pair)."""
    cohort = fold.cohort
    names = cohort.ptm_names
    pairs = {frozenset((p, q)) for p in names for q in names if p != q}
    return {pair: predict_masked(fold, sorted(pair)) for pair in pairs}


def pair_rows(fold: FoldResult) -> tuple[list[dict], list[pd.DataFrame]]:
    """Per ordered pair (p, q): R^2 of p with p and q masked, and the R^2 of p lost by masking q too;
    and per patient, the squared error of p that masking q too adds."""
    cohort = fold.cohort
    outputs = pair_predictions(fold)
    rows, losses = [], []
    for ptm in cohort.ptm_names:
        truth = observed_held_out(fold, ptm)
        from_rest = score_pattern(fold, f"without_{ptm}", ptm)
        rest_errors = squared_errors(truth, pattern_prediction(fold, f"without_{ptm}", ptm))
        for other in (q for q in cohort.ptm_names if q != ptm):
            predicted = outputs[frozenset((ptm, other))][ptm]
            both = pooled_r2(truth, predicted)
            scores = {"r2": both, "r2_lost": difference(from_rest, both)}
            rows.append(scored_row({"ptm": ptm, "also_masked": other}, scores, fold))
            losses.append(
                gain_units(
                    {"ptm": ptm, "also_masked": other}, fold, squared_errors(truth, predicted), rest_errors
                )
            )
    return rows, losses


def q5_ptm_dependency(folds: list[FoldResult]) -> Answer:
    """How well each PTM layer is predicted from the others, and which other layer it depends on.

    A layer's dependency is what the other layers add beyond genomics: its R^2 from the other layers (and
    genomics) minus its R^2 from genomics alone, so a layer whose information is all in genomics gains
    nothing. Each gain and each pair's loss is tested against zero over the held-out patients of every
    fold (a paired Wilcoxon signed-rank test of per-patient squared errors, Benjamini-Hochberg-adjusted).
    A cohort with fewer than two PTM layers cannot ask it: the answer says why and has no table.

    Tables (`Q5_TABLES`): `q5_dependency_per_fold` (R^2 of each masked PTM from the rest and from genomics
    only, and the gain), `q5_dependency_summary`, `q5_dependency_gain` (per layer: the gain's mean, 95%
    interval and test), `q5_pair_matrix_per_fold` (R^2 of p with p and q masked; r2_lost = R^2(without p)
    - R^2(without p and q), what q contributes to predicting p) and `q5_pair_matrix_summary` (r2_lost
    across folds, and its test).
    Headline: `q5_sentence` (the answer in words, or why it is not asked), `q5_abstract` (the abstract's
    sentence on Q5; empty when it is not asked) and `q5_pairs_sentence` (what the pair matrix shows).
    """
    ptm_names = folds[0].cohort.ptm_names
    if len(ptm_names) < 2:
        return q5_not_asked(ptm_names)
    dependency = pd.DataFrame([row for fold in folds for row in dependency_rows(fold)])
    gains = pd.concat([dependency_gains(fold) for fold in folds], ignore_index=True)
    pair_results = [pair_rows(fold) for fold in folds]
    pairs = pd.DataFrame([row for rows, _ in pair_results for row in rows], columns=PAIR_COLUMNS)
    losses = pd.concat([loss for _, fold_losses in pair_results for loss in fold_losses])
    pair_summary = summarise_folds(pairs, by=["ptm", "also_masked"], value="r2_lost")
    pair_summary = pair_summary.merge(gain_tests(losses, ["ptm", "also_masked"]), how="left")
    gain_summary = summarise_folds(dependency, by=["ptm"], value="r2_gain_over_genomics")
    metrics = ["r2_from_rest", "r2_genomics_only", "r2_gain_over_genomics"]
    gain = gain_summary.merge(gain_tests(gains, ["ptm"]), on="ptm", how="left")
    tables = {
        "q5_dependency_per_fold": dependency,
        "q5_dependency_summary": long_summary(dependency, ["ptm"], metrics),
        "q5_dependency_gain": gain,
        "q5_pair_matrix_per_fold": pairs,
        "q5_pair_matrix_summary": pair_summary,
    }
    sentence = dependency_sentence(gain.sort_values("mean", ascending=False))
    headline = {
        "q5_sentence": sentence,
        "q5_abstract": f"Q5 asks what the other PTM layers add to each one: {sentence}",
        "q5_pairs_sentence": "R^2 lost by each PTM layer (rows) when a second layer (columns) is masked too.",
    }
    return Answer(tables, headline)


def q5_not_asked(ptm_names: list[str]) -> Answer:
    """Q5 on a cohort with fewer than two PTM layers: no table, and a sentence that says why."""
    layers = f" ({listed(ptm_names)})" if ptm_names else ""
    reason = (
        f"Q5 needs at least two PTM layers; this cohort has {number_word(len(ptm_names))}{layers}, "
        "so it is not asked."
    )
    headline = {
        "q5_sentence": reason,
        "q5_abstract": "",
        "q5_pairs_sentence": "There is no second PTM layer to mask.",
    }
    return Answer.not_asked(Q5_TABLES, reason, headline)


def dependency_sentence(gain: pd.DataFrame) -> str:
    """The layers to which the other PTM layers add beyond genomics (a positive mean gain, BH-adjusted
    p < `ALPHA`), with their intervals, and those to which they add nothing detectable."""
    found = gain[(gain["gain_p_adjusted"] < ALPHA) & (gain["mean"] > 0)].sort_values("mean", ascending=False)
    rest = [ptm for ptm in gain["ptm"] if ptm not in set(found["ptm"])]
    if found.empty:
        return "The other PTM layers add nothing detectable beyond genomics to any PTM layer's prediction."
    listed = ", ".join(
        f"{r.ptm} {r.mean:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in found.itertuples()
    )
    sentence = (
        f"Beyond genomics, the other PTM layers add to the held-out R^2 of {listed} (mean and 95% "
        f"interval over folds; paired Wilcoxon test, BH-adjusted p < {ALPHA})"
    )
    return sentence + (f"; they add nothing detectable to {', '.join(rest)}." if rest else ".")


# ---------------------------------------------------------------------------------------------
# Q6: storm leader


def check_endpoint(cohort: Cohort, endpoint: str) -> None:
    """The endpoint must be a target layer: a PTM layer is a model input and would predict itself."""
    if endpoint not in cohort.layers:
        raise KeyError(f"unknown endpoint layer {endpoint!r}; valid layers: {', '.join(cohort.layers)}")
    if endpoint not in cohort.target_names:
        targets = ", ".join(cohort.target_names) or "(none in this cohort)"
        raise ValueError(f"endpoint {endpoint!r} is a PTM input layer; choose a target layer: {targets}")


def leader_rows(fold: FoldResult, endpoint: str) -> list[dict]:
    """Per PTM layer: R^2 of the endpoint with only that layer kept, the floor, ceiling and LOO drop."""
    cohort = fold.cohort
    floor = score_pattern(fold, "genomics_only", endpoint)
    ceiling = score_pattern(fold, "all", endpoint)
    rows = []
    for ptm in cohort.ptm_names:
        only = score_pattern(fold, f"only_{ptm}", endpoint)
        without = score_pattern(fold, f"without_{ptm}", endpoint)
        scores = {
            "r2_only": only,
            "r2_genomics_only": floor,
            "r2_all": ceiling,
            "r2_gain_over_genomics": difference(only, floor),
            "loo_drop": difference(ceiling, without),
        }
        rows.append(scored_row({"endpoint": endpoint, "ptm": ptm}, scores, fold))
    return rows


def endpoint_gains(fold: FoldResult, endpoint: str) -> pd.DataFrame:
    """Per PTM layer and held-out patient (`unit`): the endpoint's squared error from genomics only minus
    its squared error with that layer kept (and genomics), what the layer adds beyond genomics."""
    cohort = fold.cohort
    truth = observed_held_out(fold, endpoint)
    floor = squared_errors(truth, pattern_prediction(fold, "genomics_only", endpoint))
    gains = [
        gain_units(
            {"ptm": ptm},
            fold,
            floor,
            squared_errors(truth, pattern_prediction(fold, f"only_{ptm}", endpoint)),
        )
        for ptm in cohort.ptm_names
    ]
    return pd.concat(gains, ignore_index=True)


LEADER_COLUMNS = [
    "endpoint",
    "ptm",
    "mean_gain",
    "ci_low",
    "ci_high",
    "gain_p_value",
    "gain_p_adjusted",
    "mean_r2_only",
    "n_folds_scored",
    "n_folds_top",
    "fraction_folds_top",
    "n_folds_behind_best",
    "p_value_vs_best",
    "p_adjusted_vs_best",
    "separated_from_best",
    "is_leader",
]


def leader_table(per_fold: pd.DataFrame, gains: pd.DataFrame, separation: Separation) -> pd.DataFrame:
    """Per PTM layer, best first: its gain over genomics (mean, 95% interval, test against zero), its
    R^2 with the layer kept, the folds where it is the top layer, its comparison with the best layer,
    and whether it is the leader (separated from every other layer)."""
    table = separation.table.rename(
        columns={
            "item": "ptm",
            "mean": "mean_gain",
            "n_folds_ahead": "n_folds_behind_best",
            "n_folds": "n_folds_scored",
            "p_value": "p_value_vs_best",
            "p_adjusted": "p_adjusted_vs_best",
            "separated": "separated_from_best",
        }
    )
    table = table.merge(gain_tests(gains, ["ptm"]), on="ptm", how="left")
    table["mean_r2_only"] = table["ptm"].map(per_fold.groupby("ptm")["r2_only"].mean())
    tops = top_counts(per_fold, "ptm", "r2_gain_over_genomics")
    table["n_folds_top"] = table["ptm"].map(tops).fillna(0).astype(int)
    table["fraction_folds_top"] = table["n_folds_top"] / per_fold["fold"].nunique()
    table["is_leader"] = table["ptm"] == separation.leader
    table["endpoint"] = per_fold["endpoint"].iloc[0]
    return table.reindex(columns=LEADER_COLUMNS)


def q6_storm_leader(folds: list[FoldResult], endpoint: str = "metabolome") -> Answer:
    """Which single PTM layer carries most of the information about the endpoint (the storm leader).

    A layer is judged by what it adds beyond genomics: R^2 of the endpoint with that layer kept (and
    genomics) minus R^2 from genomics alone, so a layer whose information is all in genomics gains
    nothing. The leader is named only where `lpmlib.stats.separate_best` separates the best layer from
    every other one (per-patient squared errors, a paired Wilcoxon test, and the folds); otherwise there
    is no single leader. With one PTM layer there is nothing to separate it from, and the verdict is its
    gain and the test of that gain.

    Tables: `q6_leader_per_fold` (R^2 of the endpoint with one PTM kept, the genomics-only floor, the
    all-PTM ceiling, the gain over genomics and the leave-one-out drop R^2(all) - R^2(without p)),
    `q6_leader_summary`, `q6_leader` (per layer, best first: `leader_table`) and `q6_verdict` (the
    leader or none, the layers that cannot be separated from the best, and the verdict in words).
    Headline: `q6_endpoint`, `q6_question` (the question as this cohort asks it) and `q6_verdict`.
    """
    cohort = folds[0].cohort
    check_endpoint(cohort, endpoint)
    per_fold = pd.DataFrame([row for fold in folds for row in leader_rows(fold, endpoint)])
    gains = pd.concat([endpoint_gains(fold, endpoint) for fold in folds], ignore_index=True)
    scores = per_fold.rename(columns={"r2_gain_over_genomics": "value"})
    separation = separate_best(scores, gains, "ptm", paired=True)
    metrics = ["r2_only", "r2_genomics_only", "r2_all", "r2_gain_over_genomics", "loo_drop"]
    leaders = leader_table(per_fold, gains, separation)
    verdict = verdict_table(separation, "PTM layer", {"endpoint": endpoint})
    if len(cohort.ptm_names) == 1:
        verdict.loc[0, "sentence"] = single_layer_sentence(leaders.iloc[0], endpoint)
    tables = {
        "q6_leader_per_fold": per_fold,
        "q6_leader_summary": long_summary(per_fold, ["endpoint", "ptm"], metrics),
        "q6_leader": leaders,
        "q6_verdict": verdict,
    }
    headline = {
        "q6_endpoint": endpoint,
        "q6_question": leader_question(cohort.ptm_names, endpoint),
        "q6_verdict": verdict.loc[0, "sentence"],
    }
    return Answer(tables, headline)


def leader_question(ptm_names: list[str], endpoint: str) -> str:
    """Q6 as this cohort asks it, for the prose: which of its PTM layers leads, or what its only one adds."""
    if len(ptm_names) == 1:
        return f"what the cohort's one PTM layer, {ptm_names[0]}, adds to the prediction of the {endpoint}"
    return (
        f"which of the {counted(len(ptm_names), 'PTM layer')} adds most to the prediction of the {endpoint}"
    )


def single_layer_sentence(row: pd.Series, endpoint: str) -> str:
    """Q6's verdict with one PTM layer (a `leader_table` row): its gain over genomics and whether the test
    finds one."""
    interval = f"{row['mean_gain']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
    p_value = row["gain_p_adjusted"]
    test = f"mean and 95% interval over folds; paired Wilcoxon test, BH-adjusted p = {p_value:.2g}"
    if p_value < ALPHA and row["mean_gain"] > 0:
        return f"{row['ptm']} adds {interval} to the held-out R^2 of the {endpoint} beyond genomics ({test})."
    return (
        f"{row['ptm']} adds nothing detectable to the held-out R^2 of the {endpoint} beyond genomics: "
        f"{interval} ({test})."
    )
