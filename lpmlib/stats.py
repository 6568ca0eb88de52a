"""Cross-fold summaries: means with t-intervals, kept beside the per-fold values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def mean_rms(change: np.ndarray) -> float:
    """Mean over rows (patients) of the root-mean-square over columns; NaN without rows.

    The one measure of a layer's shift, shared by the planted truth and the model's estimates.
    """
    return float(np.sqrt(np.mean(change**2, axis=1)).mean()) if len(change) else np.nan


def clear_gain(gain: np.ndarray, n_se: float) -> bool:
    """Whether a paired per-patient gain has a mean above `n_se` standard errors: the one rule by which
    a more flexible predictor (a reduced rank, a deep read-out) replaces the simpler one."""
    gain = np.asarray(gain, dtype=float)
    return len(gain) > 1 and float(gain.mean()) > n_se * float(gain.std(ddof=1)) / np.sqrt(len(gain))


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval over folds, ignoring NaN folds; NaN when fewer than two remain."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(finite) == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(finite.mean())
    if len(finite) < 2:
        return (mean, np.nan, np.nan)
    half = stats.t.ppf(0.5 + level / 2, df=len(finite) - 1) * stats.sem(finite)
    return (mean, mean - half, mean + half)


def summarise_folds(per_fold: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """One row per group of `by`: mean, 95% interval, number of folds and the per-fold values."""
    rows = []
    for key, group in per_fold.groupby(by, sort=False):
        values = group.sort_values("fold")[value].to_list()
        mean, low, high = mean_interval(values)
        rows.append(
            dict(zip(by, key if isinstance(key, tuple) else (key,)))
            | {"mean": mean, "ci_low": low, "ci_high": high, "n_folds": int(np.isfinite(values).sum()),
               "per_fold": ";".join(f"{v:.4g}" for v in values)}  # fmt: skip
        )
    return pd.DataFrame(rows)


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """False-discovery-rate adjusted p-values (NaN stays NaN)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method="fdr_bh")[1]
    return adjusted


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean paired difference a - b across folds and its two-sided paired t-test p-value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return (float(np.nanmean(a - b)) if keep.any() else np.nan, np.nan)
    return float((a[keep] - b[keep]).mean()), float(stats.ttest_rel(a[keep], b[keep]).pvalue)


def rank_stability(per_fold: pd.DataFrame, item: str, score: str, top_k: int = 3) -> pd.Series:
    """Fraction of folds in which each item ranks among the top `top_k` by `score` (NaN scores never do)."""
    ranks = per_fold.groupby("fold")[score].rank(ascending=False, method="first")
    in_top = (ranks <= top_k) & per_fold[score].notna()
    n_folds = per_fold["fold"].nunique()
    return in_top.groupby(per_fold[item], sort=False).sum() / n_folds
