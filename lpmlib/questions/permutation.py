"""A permutation null for Q1: how large a knockout looks when the driver carries no information.

Each permutation shuffles one driver's column across patients, retrains every fold from scratch
on that cohort, and knocks the shuffled driver out in its (now random) held-out carriers. The
statistics are those of Q1 averaged over folds: the storm intensity (layer `z_state`) and the
`shift_rms` of every layer. `shift_rms` rather than the standardised shift, because a model trained
on a shuffled driver has its own residual spread, which would move the null for reasons other than
the knockout.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from lpmlib.cohort import Cohort, check_drivers
from lpmlib.cv import run_cv
from lpmlib.manifest import RawCohort
from lpmlib.questions.shifts import SUMMARY_KEYS, knockout_per_fold
from lpmlib.stats import benjamini_hochberg, summarise_folds
from lpmlib.tasks import run_tasks
from lpmlib.train import TrainSettings

Source = Cohort | RawCohort  # a model-ready cohort, or a raw one each fold preprocesses itself
NULL_STATISTICS = ("storm_intensity", "shift_rms")
NULL_COLUMNS = ["permutation", "driver", "layer", "quantity", "value", "n_folds"]
P_VALUE_COLUMNS = [
    "driver",
    "layer",
    "quantity",
    "observed",
    "n_permutations",
    "n_at_least_observed",
    "p_value",
    "p_adjusted",
]


def permuted_driver(cohort: Source, gene: str, rng: np.random.Generator) -> Source:
    """A copy of the cohort (model-ready or raw) whose `gene` column, with whether it is known, is
    shuffled across patients."""
    check_drivers([gene], list(cohort.drivers.columns))
    order = rng.permutation(len(cohort.drivers))
    drivers, unknown = cohort.drivers.copy(), cohort.unknown_drivers
    drivers[gene] = drivers[gene].to_numpy()[order]
    if unknown is not None:
        unknown = unknown.copy()
        unknown[gene] = unknown[gene].to_numpy()[order]
    return dataclasses.replace(cohort, drivers=drivers, unknown_drivers=unknown)


def knockout_statistics(per_fold: pd.DataFrame) -> pd.DataFrame:
    """The null's statistics from a Q1 per-fold table: cross-fold means of storm intensity and shift_rms."""
    chosen = per_fold[per_fold["quantity"].isin(NULL_STATISTICS)]
    summary = summarise_folds(chosen, by=SUMMARY_KEYS)
    return summary.rename(columns={"mean": "value"})[SUMMARY_KEYS + ["value", "n_folds"]]


def one_permutation(
    cohort: Source,
    gene: str,
    run_dir: Path,
    settings: TrainSettings,
    index: int,
    seed: int,
    n_folds: int,
    n_seeds: int,
    hyperparameters: dict,
) -> pd.DataFrame:
    """Shuffle with Generator(seed + index), retrain all folds under `run_dir/<index>`, knock out `gene`."""
    permuted = permuted_driver(cohort, gene, np.random.default_rng(seed + index))
    folds = run_cv(
        permuted,
        run_dir / str(index),
        settings,
        n_folds=n_folds,
        seed=seed,
        n_jobs=1,
        log=None,
        n_seeds=n_seeds,
        **hyperparameters,
    )
    statistics = knockout_statistics(knockout_per_fold(folds, [gene]))
    statistics.insert(0, "permutation", index)
    return statistics


def knockout_permutation_null(
    cohort: Source,
    gene: str,
    run_dir: str | Path,
    settings: TrainSettings,
    n_permutations: int,
    seed: int = 42,
    n_jobs: int = 1,
    n_folds: int = 5,
    n_seeds: int = 1,
    scheduler: str = "",
    **hyperparameters,
) -> pd.DataFrame:
    """The null distribution of Q1's knockout of `gene`: one row per permutation and layer.

    Permutations run as independent tasks (`n_jobs`, -1: every core, on the backend `scheduler` names:
    see `lpmlib.tasks`), each training its folds one after the other into the absolute
    `run_dir/permutations/<gene>/<i>` (finished folds are reused on a re-run); the
    training seed is `seed`, as in the observed run, so only the driver's column differs. Pass the
    observed run's `settings`, `seed`, `n_seeds` (models per fold, whose answers are averaged) and
    hyperparameters, or the null answers another question.
    Columns: permutation, driver, layer, quantity, value (mean over folds), n_folds (folds with
    carriers). With `n_permutations=0` nothing is trained and the frame is empty.
    """
    check_drivers([gene], list(cohort.drivers.columns))
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    if n_permutations == 0:
        return pd.DataFrame(columns=NULL_COLUMNS)
    folder = Path(run_dir).absolute() / "permutations" / gene
    shared = (seed, n_folds, n_seeds, hyperparameters)
    tasks = [(cohort, gene, folder, settings, i, *shared) for i in range(n_permutations)]
    null = run_tasks(one_permutation, tasks, n_jobs, scheduler)
    return pd.concat(null, ignore_index=True)[NULL_COLUMNS]


def permutation_p_values(observed: pd.DataFrame, null: pd.DataFrame) -> pd.DataFrame:
    """One-sided permutation p-value per statistic of the null: (1 + #{null >= observed}) / (1 + n).

    `observed` is Q1's summary (its `mean` column) or any table with driver, layer, quantity and
    `value`; only the statistics present in `null` are tested. n counts the finite null values; a NaN
    observation, or no finite null value, gives a NaN p-value. `p_adjusted`: Benjamini-Hochberg over
    the layers of each driver (one knockout, one family of tests).
    """
    if null.empty:
        return pd.DataFrame(columns=P_VALUE_COLUMNS)
    column = "mean" if "mean" in observed.columns else "value"
    by_key = observed.set_index(SUMMARY_KEYS)[column]
    rows = []
    for key, group in null.groupby(SUMMARY_KEYS, sort=False):
        match = float(by_key.get(key, np.nan))
        values = group["value"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        at_least = int((values >= match).sum())
        testable = np.isfinite(match) and len(values) > 0
        p_value = (1 + at_least) / (1 + len(values)) if testable else np.nan
        counts = {"observed": match, "n_permutations": len(values), "n_at_least_observed": at_least}
        rows.append(dict(zip(SUMMARY_KEYS, key)) | counts | {"p_value": p_value})
    table = pd.DataFrame(rows, columns=P_VALUE_COLUMNS[:-1])
    table["p_adjusted"] = np.nan
    for _, index in table.groupby("driver", sort=False).groups.items():
        table.loc[index, "p_adjusted"] = benjamini_hochberg(table.loc[index, "p_value"].to_numpy(dtype=float))
    return table
