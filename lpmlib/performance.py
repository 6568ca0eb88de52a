"""Q0: held-out R^2 of every layer for the LPM and its baselines, per fold and across folds.

Methods: the LPM with all inputs (a PTM layer is predicted with itself masked, from the other
layers), the LPM's genomics-only path (every PTM masked), ridge regression on the same inputs,
ridge on genomics only, and on simulated cohorts the noise ceiling from the planted truth.
R^2 is pooled over all held-out patients of a fold: uniform (mean over features) and
variance-weighted (features weighted by their held-out variance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from lpmlib.cohort import N_GRADES, Cohort
from lpmlib.cv import FoldResult, fold_view
from lpmlib.perturb import observed_held_out
from lpmlib.stats import summarise_folds

RIDGE_ALPHAS = np.logspace(-2, 5, 15)
METRICS = {"r2_uniform": "uniform_average", "r2_variance_weighted": "variance_weighted"}
METHODS = ("lpm_all", "lpm_genomics_only", "ridge_all", "ridge_genomics_only")


def genomic_design(cohort: Cohort) -> np.ndarray:
    """Drivers and one-hot grade: the inputs of the genomics-only models."""
    grade = np.eye(N_GRADES)[cohort.clinical["grade"].to_numpy()]
    return np.hstack([cohort.drivers.to_numpy(dtype=float), grade])


def ridge_inputs(cohort: Cohort, layer: str, fold: FoldResult, genomics_only: bool) -> np.ndarray:
    """Ridge's inputs for predicting `layer`, as the LPM sees them: genomics, plus every PTM layer
    other than `layer` scaled like the model's inputs (a fold's training statistics, one scale per layer).
    """
    view = fold_view(cohort, fold)
    blocks = [genomic_design(view)]
    if not genomics_only:
        blocks += [fold.scaler.standardise(p, view.layers[p].values.to_numpy()) for p in view.ptm_names if p != layer]
    return np.hstack(blocks)


def ridge_prediction(cohort: Cohort, layer: str, fold: FoldResult, genomics_only: bool) -> np.ndarray:
    """Held-out prediction of `layer` by RidgeCV fitted on the fold's training patients."""
    x = ridge_inputs(cohort, layer, fold, genomics_only)
    y = fold_view(cohort, fold).layers[layer].values.to_numpy()
    model = RidgeCV(alphas=RIDGE_ALPHAS)
    return model.fit(x[fold.train_rows], y[fold.train_rows]).predict(x[fold.test_rows])


def lpm_prediction(cohort: Cohort, layer: str, fold: FoldResult, genomics_only: bool) -> np.ndarray:
    """The LPM's held-out prediction of `layer`: a PTM layer is always predicted with itself masked."""
    if genomics_only:
        pattern = "genomics_only"
    else:
        pattern = f"without_{layer}" if layer in cohort.ptm_names else "all"
    return fold.predictions[pattern][layer]


def q0_per_fold(cohort: Cohort, folds: list[FoldResult]) -> pd.DataFrame:
    """One row per fold, method, layer and metric: the held-out R^2 and the patients it rests on."""
    predictors = {
        "lpm_all": lambda layer, f: lpm_prediction(cohort, layer, f, genomics_only=False),
        "lpm_genomics_only": lambda layer, f: lpm_prediction(cohort, layer, f, genomics_only=True),
        "ridge_all": lambda layer, f: ridge_prediction(cohort, layer, f, genomics_only=False),
        "ridge_genomics_only": lambda layer, f: ridge_prediction(cohort, layer, f, genomics_only=True),
    }
    rows = []
    for fold in folds:
        for layer in cohort.target_names + cohort.ptm_names:
            truth = observed_held_out(cohort, fold, layer)
            for method, predict in predictors.items():
                predicted = predict(layer, fold)
                for metric, average in METRICS.items():
                    rows.append({"method": method, "layer": layer, "metric": metric, "fold": fold.fold,
                                 "value": r2_score(truth, predicted, multioutput=average),
                                 "n_patients": len(fold.test_rows)})  # fmt: skip
    return pd.DataFrame(rows)


def q0_summary(per_fold: pd.DataFrame, layer_truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean, 95% t-interval and per-fold values; on simulated cohorts the noise ceiling as well.

    The ceiling is the variance-weighted R^2 of the noise-free layer against the observed one, over
    the whole cohort: no predictor can beat it except by chance.
    """
    summary = summarise_folds(per_fold, by=["method", "layer", "metric"])
    if layer_truth is not None:
        ceiling = pd.DataFrame(
            {"method": "noise_ceiling", "layer": layer_truth.index, "metric": "r2_variance_weighted",
             "mean": layer_truth["noise_ceiling"].to_numpy(), "n_folds": 0, "per_fold": ""}
        )  # fmt: skip
        summary = pd.concat([summary, ceiling[ceiling["layer"].isin(per_fold["layer"])]], ignore_index=True)
    return summary


def headline(summary: pd.DataFrame, metric: str = "r2_variance_weighted") -> dict[str, float]:
    """`<method>_<layer>` -> cross-fold mean R^2, the numbers the book quotes in its prose."""
    chosen = summary[summary["metric"] == metric]
    return {f"{row.method}_{row.layer}": float(row.mean) for row in chosen.itertuples()}


def r2_table(summary: pd.DataFrame, metric: str = "r2_variance_weighted") -> pd.DataFrame:
    """Layers x methods: the cross-fold mean R^2, layers and methods in the order they were computed."""
    chosen = summary[summary["metric"] == metric]
    table = chosen.pivot(index="layer", columns="method", values="mean")
    return table.reindex(index=list(dict.fromkeys(chosen["layer"])), columns=list(dict.fromkeys(chosen["method"])))


def target_sentence(summary: pd.DataFrame, targets: list[str], metric: str = "r2_variance_weighted") -> str:
    """The prose of the target layers' held-out R^2, LPM then ridge, for any cohort's targets:
    "0.21 for rna and 0.26 for protein; ridge regression on the same inputs reaches 0.30 and 0.39"."""
    numbers = headline(summary, metric)
    lpm = [f"{numbers[f'lpm_all_{layer}']:.2f} for {layer}" for layer in targets]
    ridge = [f"{numbers[f'ridge_all_{layer}']:.2f}" for layer in targets]
    return f"{_enumerate(lpm)}; ridge regression on the same inputs reaches {_enumerate(ridge)}"


def _enumerate(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
