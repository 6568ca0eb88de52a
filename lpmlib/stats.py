"""Cross-fold summaries: means with t-intervals, kept beside the per-fold values.

With several models per fold (`n_seeds`), per-model rows carry a `training_seed` column: every summary
and test first averages a fold's models (`seed_means`), so a fold counts once however many seeds it has,
and the spread between seeds is reported beside the spread between folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


def mean_rms(change: np.ndarray) -> float:
    """Mean over rows (patients) of the root-mean-square over columns; NaN without rows.

    The one measure of a layer's shift, shared by the planted truth and the model's estimates.
    """
    return float(np.sqrt(np.mean(change**2, axis=1)).mean()) if len(change) else np.nan


def squared_errors(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per patient: the squared error summed over the layer's features."""
    return ((predicted - truth) ** 2).sum(axis=1)


def clear_gain(gain: np.ndarray, n_se: float) -> bool:
    """Whether a paired per-patient gain has a mean above `n_se` standard errors: the one rule by which
    a more flexible predictor (a reduced rank, a deep read-out) replaces the simpler one."""
    gain = np.asarray(gain, dtype=float)
    return len(gain) > 1 and float(gain.mean()) > n_se * float(gain.std(ddof=1)) / np.sqrt(len(gain))


SEED = "training_seed"  # column of per-model rows: which of a fold's models (1 .. n_seeds) gave the row


def seed_means(table: pd.DataFrame, keys: list[str], value: str = "value") -> pd.DataFrame:
    """One row per group of `keys` (which include `fold`): `value` averaged over the fold's models.

    A table without `training_seed` has one model per fold and is returned as it is (its `keys` and
    `value`). Answers are averaged, never latents: the z_state spaces of different models are not aligned.
    """
    if SEED not in table.columns:
        return table[[*keys, value]]
    return table.groupby(keys, sort=False, dropna=False)[value].mean().reset_index()


def model_keys(table: pd.DataFrame) -> list[str]:
    """The columns that name the model of a per-model row: `fold`, and `training_seed` when present."""
    return ["fold", SEED] if SEED in table.columns else ["fold"]


def one_seed(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each fold's first model: for counts (patients, carriers), which every model shares."""
    return table[table[SEED] == table[SEED].min()] if SEED in table.columns else table


def seed_spread(table: pd.DataFrame, by: list[str], value: str = "value") -> pd.Series:
    """Per group of `by`: the standard deviation between a fold's models, pooled over folds (the root mean
    within-fold variance); NaN with one model per fold."""
    if SEED not in table.columns or table[SEED].nunique() < 2:
        return pd.Series(dtype=float)
    variance = table.groupby([*by, "fold"], sort=False, dropna=False)[value].var(ddof=1)
    return np.sqrt(variance.groupby(level=list(range(len(by))), sort=False).mean())


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
    """One row per group of `by`: mean, 95% interval, number of folds and the per-fold values (each the
    mean of the fold's models), and the spread of the answer between folds and between a fold's models
    (`sd_between_folds`, `sd_between_seeds`: NaN with one model per fold)."""
    between_seeds = seed_spread(per_fold, by, value)
    rows = []
    for key, group in seed_means(per_fold, [*by, "fold"], value).groupby(by, sort=False):
        values = group.sort_values("fold")[value].to_list()
        mean, low, high = mean_interval(values)
        finite = [v for v in values if np.isfinite(v)]
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            dict(zip(by, key))
            | {
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "n_folds": len(finite),
                "per_fold": ";".join(f"{v:.4g}" for v in values),
                "sd_between_folds": float(np.std(finite, ddof=1)) if len(finite) > 1 else np.nan,
                "sd_between_seeds": float(between_seeds.get(key if len(key) > 1 else key[0], np.nan)),
            }
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


def top_counts(per_fold: pd.DataFrame, item: str, score: str = "value") -> pd.Series:
    """Number of folds in which each item has the highest finite `score` (the mean of the fold's models)."""
    per_fold = seed_means(per_fold, [item, "fold"], score)
    finite = per_fold[np.isfinite(per_fold[score].to_numpy(dtype=float))]
    winners = finite.loc[finite.groupby("fold")[score].idxmax(), item]
    return winners.value_counts().reindex(per_fold[item].unique(), fill_value=0)


def rank_stability(per_fold: pd.DataFrame, item: str, score: str, top_k: int = 3) -> pd.Series:
    """Fraction of folds in which each item ranks among the top `top_k` by `score` (NaN scores never do)."""
    per_fold = seed_means(per_fold, [item, "fold"], score)
    ranks = per_fold.groupby("fold")[score].rank(ascending=False, method="first")
    in_top = (ranks <= top_k) & per_fold[score].notna()
    n_folds = per_fold["fold"].nunique()
    return in_top.groupby(per_fold[item], sort=False).sum() / n_folds


# ---------------------------------------------------------------------------------------------
# Naming a winner only where the data separate it

ALPHA = 0.05  # Benjamini-Hochberg-adjusted level at which the best item must beat each other one
FOLD_FRACTION = 0.8  # of the folds in which it must also be ahead of each other one (4 of 5)


@dataclass(frozen=True)
class Separation:
    """Whether the best of several items (layers, drivers) is separated from every other one.

    `table`: one row per item, best first: its cross-fold `mean` and 95% interval, and, against the
    best, the test's `p_value` and `p_adjusted`, `n_folds_ahead` (folds in which the best scores higher)
    of `n_folds`, and `separated`. `leader` is the best item when it is separated from every other one,
    else None; `tied` lists the items that cannot be separated from the best (the best first).
    """

    table: pd.DataFrame
    leader: str | None
    tied: list[str]
    test: str  # the test that compared the best with each other item


def separate_best(scores: pd.DataFrame, units: pd.DataFrame, item: str, paired: bool) -> Separation:
    """The best item by mean per-fold score, and whether it beats every other item.

    `scores`: columns `item`, `fold`, `value` (one score per item and fold, higher is better).
    `units`: columns `item`, `fold`, `unit`, `value`: the per-patient values that the test compares,
    pooled over folds (higher is better). Paired (the same patients for every item, as layers predicted
    for the same held-out patients): a Wilcoxon signed-rank test of the per-patient differences, which
    needs no normality and no equal variances. Unpaired (different patients per item, as the carriers of
    different drivers): a Mann-Whitney U test. Both two-sided, Benjamini-Hochberg-adjusted over the
    comparisons with the best. The best is separated from an item when the adjusted p is below `ALPHA`
    and it is ahead in at least `FOLD_FRACTION` of the folds where both are scored. Scores and per-patient
    values of several models per fold are averaged over the fold's models first (`seed_means`).
    """
    scores = seed_means(scores, [item, "fold"])
    units = seed_means(units, [item, "fold", "unit"])
    by_fold = scores.pivot_table(index="fold", columns=item, values="value", sort=False)
    means = by_fold.mean().dropna().sort_values(ascending=False, kind="stable")
    if means.empty:
        return Separation(pd.DataFrame(columns=SEPARATION_COLUMNS), None, [], _test_name(paired))
    best = means.index[0]
    n_best = int(by_fold[best].notna().sum())
    rows = [{item: best, "p_value": np.nan, "n_folds_ahead": np.nan, "n_folds": n_best}]
    for other in means.index[1:]:
        both = by_fold[[best, other]].dropna()
        rows.append(
            {
                item: other,
                "p_value": _p_value(units, item, best, other, paired),
                "n_folds_ahead": int((both[best] > both[other]).sum()),
                "n_folds": len(both),
            }
        )
    table = pd.DataFrame(rows)
    table.insert(1, "mean", [means[name] for name in table[item]])
    intervals = [mean_interval(by_fold[name].to_list()) for name in table[item]]
    table.insert(2, "ci_low", [low for _, low, _ in intervals])
    table.insert(3, "ci_high", [high for _, _, high in intervals])
    table["p_adjusted"] = np.concatenate([[np.nan], benjamini_hochberg(table["p_value"].iloc[1:])])
    needed = np.ceil(FOLD_FRACTION * table["n_folds"])
    table["separated"] = (table["p_adjusted"] < ALPHA) & (table["n_folds_ahead"] >= needed)
    table.loc[0, "separated"] = False
    tied = [best, *table.loc[1:, item][~table.loc[1:, "separated"]]]
    has_interval = bool(np.isfinite(table.loc[0, "ci_low"]))  # scored in at least two folds
    leader = best if len(tied) == 1 and has_interval else None
    return Separation(table.rename(columns={item: "item"}), leader, tied, _test_name(paired))


SEPARATION_COLUMNS = [
    "item",
    "mean",
    "ci_low",
    "ci_high",
    "p_value",
    "n_folds_ahead",
    "n_folds",
    "p_adjusted",
    "separated",
]


def _test_name(paired: bool) -> str:
    return "paired Wilcoxon signed-rank" if paired else "Mann-Whitney U"


def _p_value(units: pd.DataFrame, item: str, best: str, other: str, paired: bool) -> float:
    a, b = units[units[item] == best], units[units[item] == other]
    if paired:
        merged = a.merge(b, on=["fold", "unit"], suffixes=("_best", "_other"))
        differences = (merged["value_best"] - merged["value_other"]).to_numpy(dtype=float)
        differences = differences[np.isfinite(differences)]
        if len(differences) < 2 or not np.any(differences):
            return np.nan if len(differences) < 2 else 1.0
        return float(stats.wilcoxon(differences).pvalue)
    x, y = a["value"].to_numpy(dtype=float), b["value"].to_numpy(dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        return np.nan
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def gain_tests(units: pd.DataFrame, by: list[str], alternative: str = "two-sided") -> pd.DataFrame:
    """Per group of `by`: a Wilcoxon signed-rank test that the per-patient gains (`value`, pooled over folds
    and averaged over each fold's models) are centred on zero (`alternative`: "greater" asks whether they
    are positive), Benjamini-Hochberg-adjusted over the groups."""
    rows = []
    for key, group in seed_means(units, [*by, "fold", "unit"]).groupby(by, sort=False):
        gains = group["value"].to_numpy(dtype=float)
        gains = gains[np.isfinite(gains)]
        p_value = np.nan if len(gains) < 2 else 1.0
        if len(gains) >= 2 and np.any(gains):
            p_value = float(stats.wilcoxon(gains, alternative=alternative).pvalue)
        rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,))) | {"gain_p_value": p_value})
    table = pd.DataFrame(rows, columns=[*by, "gain_p_value"])
    table["gain_p_adjusted"] = benjamini_hochberg(table["gain_p_value"])
    return table


def separation_sentence(separation: Separation, noun: str, value_format: str = ".3f") -> str:
    """The verdict in words: the leader with its interval and test, or that no single one leads."""
    table = separation.table
    if table.empty:
        return f"No {noun} could be scored."
    best = table.iloc[0]
    low, high = (f"{best[bound]:{value_format}}" for bound in ("ci_low", "ci_high"))
    interval = f"{best['mean']:{value_format}} [{low}, {high}]"
    if not np.isfinite(best["ci_low"]):
        interval = f"{best['mean']:{value_format}} (scored in {int(best['n_folds'])} fold: no interval)"
    if separation.leader is not None and len(table) > 1:
        others = table.iloc[1:]
        folds = f"{int(others['n_folds_ahead'].min())} of {int(others['n_folds'].max())} folds"
        return (
            f"{best['item']} leads, at {interval} (mean and 95% interval over folds): ahead of every "
            f"other {noun} in at least {folds}, "
            f"{separation.test} test BH-adjusted p <= {others['p_adjusted'].max():.2g}."
        )
    if separation.leader is not None:
        return f"{best['item']} is the only {noun}, at {interval}."
    others = table.iloc[1:]  # the best has no test against itself
    untested = set(others.loc[others["p_value"].isna(), "item"])
    tested = [item for item in separation.tied[1:] if item not in untested]
    few = [item for item in separation.tied[1:] if item in untested]
    parts = [", ".join(tested)] if tested else []
    if few:
        parts.append(f"{', '.join(few)} (too few values to test)")
    if not parts:  # separated from every other one, but without an interval of its own
        return (
            f"No {noun} can be named: {best['item']} has the highest mean, {interval}, too few folds to "
            "name it."
        )
    return (
        f"No single {noun} leads: {best['item']} has the highest mean, {interval}, but cannot be "
        f"separated from {'; nor from '.join(parts)}. A {separation.test} test with BH-adjusted "
        f"p < {ALPHA} and a lead in at least {FOLD_FRACTION:.0%} of the folds are both "
        "needed."
    )
