"""Q0: held-out R^2 of every layer for the LPM and its baselines, per fold and across folds.

Methods, each with all inputs (a PTM layer is predicted with itself masked, from the other layers) and
from genomics only (every PTM masked): the LPM (`lpm_*`), its deep path alone (`deep_*`: the direct
read-out, trained without the anchor), ridge regression (`ridge_*`) and reduced-rank ridge
(`reduced_rank_ridge_*`) on the same inputs as the model sees them; on simulated cohorts the noise
ceiling from the planted truth. R^2 is pooled over all held-out patients of a fold: uniform (mean over
features) and variance-weighted (features weighted by their held-out variance). The LPM is compared with
ridge per fold and by a paired test over held-out patients (`lpm_versus_ridge`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import r2_score
from threadpoolctl import threadpool_limits

from lpmlib.cohort import Cohort
from lpmlib.cv import DEEP, FoldResult
from lpmlib.describe import counted, listed
from lpmlib.linear import cohort_genomic_design, design, fit_reduced_rank_ridge, fit_ridge
from lpmlib.model import INPUTS, evaluation_patterns
from lpmlib.perturb import observed_held_out
from lpmlib.questions import Answer
from lpmlib.stats import SEED, mean_interval, model_keys, seed_means, summarise_folds

METRICS = {"r2_uniform": "uniform_average", "r2_variance_weighted": "variance_weighted"}
MODELS = ("lpm", "deep", "ridge", "reduced_rank_ridge")
METHODS = tuple(f"{model}_{inputs}" for model in MODELS for inputs in INPUTS)
Predictor = Callable[[Cohort, str, FoldResult, bool], np.ndarray]


def linear_inputs(cohort: Cohort, layer: str, fold: FoldResult, genomics_only: bool) -> np.ndarray:
    """The linear baselines' inputs for predicting `layer`, as the LPM sees them: genomics, plus every
    PTM layer other than `layer` scaled like the model's inputs (a fold's training statistics)."""
    view = fold.cohort
    visible = [] if genomics_only else [p for p in view.ptm_names if p != layer]
    ptms = {p: fold.scaler.standardise(p, view.layers[p].values.to_numpy()) for p in visible}
    return design(cohort_genomic_design(view), ptms, visible)


def linear_predictor(fitter: Callable) -> Predictor:
    """Held-out predictions of a linear model fitted on the fold's training patients."""

    def predict(cohort: Cohort, layer: str, fold: FoldResult, genomics_only: bool) -> np.ndarray:
        x = linear_inputs(cohort, layer, fold, genomics_only)
        y = fold.cohort.layers[layer].values.to_numpy(dtype=np.float64)
        return fitter(x[fold.train_rows], y[fold.train_rows]).predict(x[fold.test_rows])

    return predict


def lpm_pattern(cohort: Cohort, layer: str, genomics_only: bool) -> str:
    """The named pattern of a layer's prediction: a PTM layer is always predicted with itself masked."""
    return evaluation_patterns(layer, cohort.ptm_names)[1 if genomics_only else 0]


def lpm_prediction(cohort: Cohort, layer: str, fold: FoldResult, genomics_only: bool) -> np.ndarray:
    """The LPM's held-out prediction of `layer` (stored by `run_cv`)."""
    return fold.predictions[lpm_pattern(cohort, layer, genomics_only)][layer]


def deep_prediction(cohort: Cohort, layer: str, fold: FoldResult, genomics_only: bool) -> np.ndarray:
    """The held-out prediction of the deep path alone: the direct read-out, trained without the anchor."""
    return fold.predictions[DEEP + lpm_pattern(cohort, layer, genomics_only)][layer]


PREDICTORS: dict[str, Predictor] = {
    "lpm": lpm_prediction,
    "deep": deep_prediction,
    "ridge": linear_predictor(fit_ridge),
    "reduced_rank_ridge": linear_predictor(fit_reduced_rank_ridge),
}


def held_out_errors(folds: list[FoldResult]) -> pd.DataFrame:
    """One row per fold, method, layer and held-out patient: the squared error summed over features, with
    the R^2 of the fold in the same row (so per-patient tests and per-fold scores share one computation)."""
    with threadpool_limits(
        1
    ):  # one BLAS thread: fast for these small problems, and the same rounding anywhere
        return pd.concat([_fold_errors(fold) for fold in folds], ignore_index=True)


TRAINED = ("lpm", "deep")  # the methods that differ between a fold's models; the linear baselines do not


def _fold_errors(fold: FoldResult) -> pd.DataFrame:
    """A fold's errors; the linear baselines are fitted once per fold, with its first model."""
    cohort = fold.cohort
    rows = []
    methods = PREDICTORS if fold.training_seed == 1 else {m: PREDICTORS[m] for m in TRAINED}
    for layer in cohort.target_names + cohort.ptm_names:
        truth = observed_held_out(fold, layer)
        for model, predict in methods.items():
            for inputs in INPUTS:
                predicted = predict(cohort, layer, fold, inputs == "genomics_only")
                r2 = {
                    metric: r2_score(truth, predicted, multioutput=average)
                    for metric, average in METRICS.items()
                }
                errors = ((truth - predicted) ** 2).sum(axis=1)
                rows.append(
                    pd.DataFrame(
                        {
                            "method": f"{model}_{inputs}",
                            "layer": layer,
                            **fold.keys,
                            "patient": np.arange(len(errors)),
                            "squared_error": errors,
                            **r2,
                        }
                    )
                )
    return pd.concat(rows, ignore_index=True)


def q0_per_fold(folds: list[FoldResult], errors: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per fold (and training seed of the LPM's models), layer, method and metric: the held-out R^2
    and the patients it rests on."""
    errors = held_out_errors(folds) if errors is None else errors
    keys = model_keys(errors)
    per_fold = (
        errors.groupby(["method", "layer", *keys], sort=False)
        .agg(n_patients=("patient", "size"), **{m: (m, "first") for m in METRICS})
        .reset_index()
    )
    rows = [
        {
            "method": row["method"],
            "layer": row["layer"],
            "metric": metric,
            **{k: row[k] for k in keys},
            "value": row[metric],
            "n_patients": row["n_patients"],
        }
        for _, row in per_fold.iterrows()
        for metric in METRICS
    ]
    return pd.DataFrame(rows)


def lpm_versus_ridge(cohort: Cohort, errors: pd.DataFrame, baseline: str = "ridge") -> pd.DataFrame:
    """Per layer and inputs: the LPM's variance-weighted R^2 minus the baseline's, per fold with its 95%
    interval, the folds where the LPM is ahead, and a paired Wilcoxon signed-rank test of the two models'
    squared errors over all held-out patients pooled across folds (paired: the same patients; a rank test:
    errors of a few patients should not decide it). With several models per fold, the LPM's R^2 and each
    patient's error are the means over the fold's models."""
    rows = []
    for layer in cohort.target_names + cohort.ptm_names:
        for inputs in INPUTS:
            lpm = errors[(errors["method"] == f"lpm_{inputs}") & (errors["layer"] == layer)]
            base = errors[(errors["method"] == f"{baseline}_{inputs}") & (errors["layer"] == layer)]
            per_model = lpm.drop_duplicates(model_keys(lpm))  # one R^2 per fold and model
            lpm_r2 = seed_means(per_model, ["fold"], "r2_variance_weighted").set_index("fold")[
                "r2_variance_weighted"
            ]
            differences = (lpm_r2 - base.groupby("fold")["r2_variance_weighted"].first()).to_numpy()
            lpm = seed_means(lpm, ["fold", "patient"], "squared_error")
            mean, low, high = mean_interval(differences)
            error_gap = lpm["squared_error"].to_numpy() - base["squared_error"].to_numpy()
            p_value = stats.wilcoxon(error_gap).pvalue if np.any(error_gap != 0) else 1.0
            rows.append(
                {
                    "layer": layer,
                    "inputs": inputs,
                    "baseline": baseline,
                    "mean_difference": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "n_folds_ahead": int((differences > 0).sum()),
                    "n_folds": len(differences),
                    "per_fold": ";".join(f"{d:.4g}" for d in differences),
                    "wilcoxon_p": float(p_value),
                    "n_patients": len(error_gap),
                }
            )
    return pd.DataFrame(rows)


def read_out_table(folds: list[FoldResult]) -> pd.DataFrame:
    """The read-out each fold chose for each layer on its inner split (anchor, residual or blend, with
    the weight), beside the inner-split errors (relative to the training mean's) behind the choice."""
    return pd.concat([fold.read_out.assign(**fold.keys) for fold in folds], ignore_index=True)[
        [
            "layer",
            "inputs",
            "fold",
            SEED,
            "read_out",
            "weight",
            "inner_error_anchor",
            "inner_error_chosen",
            "inner_error_deep",
        ]
    ]


def read_out_matrix(read_outs: pd.DataFrame) -> pd.DataFrame:
    """(Layer, inputs) x models: each model's read-out as `anchor`, `residual 0.5` or `blend 0.25`; a column
    per fold, or per fold and training seed when a fold has several models."""
    labels = read_outs.assign(
        label=[
            r if r == "anchor" else f"{r} {w:g}" for r, w in zip(read_outs["read_out"], read_outs["weight"])
        ]
    )
    several = read_outs[SEED].nunique() > 1
    table = labels.pivot(index=["layer", "inputs"], columns=["fold", SEED], values="label")
    table.columns = [f"fold {k}, seed {s}" if several else f"fold {k}" for k, s in table.columns]
    order = list(dict.fromkeys(zip(read_outs["layer"], read_outs["inputs"])))
    return table.reindex(index=pd.MultiIndex.from_tuples(order, names=["layer", "inputs"]))


def versus_sentence(versus: pd.DataFrame, margin: float = 0.005, level: float = 0.05) -> str:
    """The comparison with ridge in words: how many layer predictions are ahead, level or behind, and
    which differences the paired test separates."""
    ahead = versus[versus["mean_difference"] > margin]
    behind = versus[versus["mean_difference"] < -margin]

    def named(rows: pd.DataFrame) -> str:
        return ", ".join(
            f"{r.layer} ({r.inputs.replace('_', ' ')}, {r.mean_difference:+.3f}, p = {r.wilcoxon_p:.2g})"
            for r in rows.itertuples()
        )

    parts = [
        f"Of {len(versus)} layer predictions (every layer, with all inputs and from genomics only), the LPM "
        f"is within {margin} of ridge's held-out R^2 on {len(versus) - len(ahead) - len(behind)}, "
        f"ahead by more on {len(ahead)} and behind by more on {len(behind)}."
    ]
    for label, rows in (("Ahead", ahead), ("Behind", behind)):
        if len(rows):
            significant = rows[rows["wilcoxon_p"] < level]
            parts.append(
                f"{label}: {named(rows)}; significant at p < {level}: {len(significant)} of {len(rows)}."
            )
    return " ".join(parts)


def q0_summary(per_fold: pd.DataFrame, layer_truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean, 95% t-interval and per-fold values; on simulated cohorts the noise ceiling as well.

    The ceiling is the variance-weighted R^2 of the noise-free layer against the observed one, over
    the whole cohort: no predictor can beat it except by chance.
    """
    summary = summarise_folds(per_fold, by=["method", "layer", "metric"])
    if layer_truth is not None:
        ceiling = pd.DataFrame(
            {
                "method": "noise_ceiling",
                "layer": layer_truth.index,
                "metric": "r2_variance_weighted",
                "mean": layer_truth["noise_ceiling"].to_numpy(),
                "n_folds": 0,
                "per_fold": "",
            }
        )
        summary = pd.concat([summary, ceiling[ceiling["layer"].isin(per_fold["layer"])]], ignore_index=True)
    return summary


def spread_table(
    summary: pd.DataFrame,
    methods: tuple[str, ...] = ("lpm_all", "lpm_genomics_only", "deep_all"),
    metric: str = "r2_variance_weighted",
) -> pd.DataFrame:
    """(Layer, method) rows: the cross-fold mean R^2, its spread between folds and between a fold's models
    (seeds): how much of an answer's uncertainty the training seed carries beside the patients."""
    chosen = summary[(summary["metric"] == metric) & summary["method"].isin(methods)]
    table = chosen.set_index(["layer", "method"])[["mean", "sd_between_folds", "sd_between_seeds"]]
    return table.sort_index(level="method", sort_remaining=False, kind="stable")


def headline(summary: pd.DataFrame, metric: str = "r2_variance_weighted") -> dict[str, float]:
    """`<method>_<layer>` -> cross-fold mean R^2, the numbers the book quotes in its prose."""
    chosen = summary[summary["metric"] == metric]
    return {f"{row.method}_{row.layer}": float(row.mean) for row in chosen.itertuples()}


def r2_table(summary: pd.DataFrame, metric: str = "r2_variance_weighted") -> pd.DataFrame:
    """Layers x methods: the cross-fold mean R^2, layers and methods in the order they were computed."""
    chosen = summary[summary["metric"] == metric]
    table = chosen.pivot(index="layer", columns="method", values="mean")
    return table.reindex(
        index=list(dict.fromkeys(chosen["layer"])), columns=list(dict.fromkeys(chosen["method"]))
    )


def target_sentence(summary: pd.DataFrame, targets: list[str], metric: str = "r2_variance_weighted") -> str:
    """The prose of the target layers' held-out R^2, LPM then ridge, for any cohort's targets:
    "0.21 for rna and 0.26 for protein; ridge regression on the same inputs reaches 0.30 and 0.39"."""
    numbers = headline(summary, metric)
    lpm = [f"{numbers[f'lpm_all_{layer}']:.2f} for {layer}" for layer in targets]
    ridge = [f"{numbers[f'ridge_all_{layer}']:.2f}" for layer in targets]
    return f"{listed(lpm)}; ridge regression on the same inputs reaches {listed(ridge)}"


def q0_held_out_performance(folds: list[FoldResult], layer_truth: pd.DataFrame | None = None) -> Answer:
    """Q0: how well the LPM predicts held-out patients, beside its baselines on the same folds.

    Tables: `q0_read_outs` (`read_out_table`), `q0_cv_performance` (`q0_per_fold`), `q0_cv_summary`
    (`q0_summary`, with the noise ceiling given `layer_truth`) and `q0_lpm_versus_ridge`. Headline: every
    `<method>_<layer>` mean R^2 (`headline`), the target layers' sentence, the comparison with ridge, the
    read-outs the deep model contributes to, and the models per fold.
    """
    cohort = folds[0].cohort
    read_outs = read_out_table(folds)
    errors = held_out_errors(folds)
    per_fold = q0_per_fold(folds, errors)
    summary = q0_summary(per_fold, layer_truth)
    versus = lpm_versus_ridge(cohort, errors)
    tables = {
        "q0_read_outs": read_outs,
        "q0_cv_performance": per_fold,
        "q0_cv_summary": summary,
        "q0_lpm_versus_ridge": versus,
    }
    numbers = {
        "q0_targets": target_sentence(summary, cohort.target_names),
        "q0_versus": versus_sentence(versus),
        "n_deep_read_outs": int((read_outs["read_out"] != "anchor").sum()),
        "n_read_outs": len(read_outs),
        "models_per_fold": counted(max(fold.training_seed for fold in folds), "model"),
    }
    return Answer(tables, headline(summary) | numbers)
