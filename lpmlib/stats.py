"""Cross-fold summaries: means with t-intervals, kept beside the per-fold values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


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
               "per_fold": ";".join(f"{v:.4f}" for v in values)}  # fmt: skip
        )
    return pd.DataFrame(rows)
