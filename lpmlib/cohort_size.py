"""Where depth pays: held-out R^2 against the number of patients, the LPM beside its baselines.

Each size is a cohort simulated from one world (the same simulation seed and nonlinearity; the world
does not depend on the number of patients), trained by cross-validation as the book's own run is, and
scored by Q0: the LPM, its deep path alone (trained without the anchor), ridge and reduced-rank ridge
on the same folds, beside the cohort's noise ceiling. Checkpoints go under `run_dir/n<size>`, so an
interrupted curve resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lpmlib.cv import run_cv
from lpmlib.performance import q0_per_fold, q0_summary
from lpmlib.simulate import SimulationConfig, simulate_cohort
from lpmlib.stats import mean_interval
from lpmlib.tasks import shared_scheduler
from lpmlib.train import TrainSettings

CURVE_METHODS = ("lpm", "deep", "ridge", "reduced_rank_ridge", "noise_ceiling")


def r2_by_cohort_size(
    sizes: Sequence[int],
    run_dir: str | Path,
    settings: TrainSettings = TrainSettings(),
    n_folds: int = 5,
    seed: int = 42,
    simulation_seed: int = 42,
    nonlinearity: float = 0.0,
    n_jobs: int = 1,
    log: Callable[[str], None] | None = None,
    scheduler: str = "",
    **hyperparameters,
) -> pd.DataFrame:
    """One row per size, target layer, inputs and method: the cross-fold mean variance-weighted R^2 with
    its 95% interval and per-fold values (the noise ceiling has no folds and no inputs). Each size trains
    its folds on the backend `scheduler` names (`lpmlib.tasks`); a local Dask cluster serves every size."""
    rows = []
    with shared_scheduler(scheduler, n_jobs) as address:
        for n_patients in sizes:
            simulated = simulate_cohort(
                SimulationConfig(n_patients=n_patients, seed=simulation_seed, nonlinearity=nonlinearity)
            )
            cohort = simulated.cohort
            run = Path(run_dir) / f"n{n_patients}"
            folds = run_cv(
                cohort, run, settings, n_folds, seed, n_jobs, log, scheduler=address, **hyperparameters
            )
            summary = q0_summary(q0_per_fold(folds), simulated.layer_truth.set_index("layer"))
            summary = summary[
                (summary["metric"] == "r2_variance_weighted") & summary["layer"].isin(cohort.target_names)
            ]
            rows.append(summary.assign(n_patients=n_patients))
    table = pd.concat(rows, ignore_index=True).drop(columns="metric")
    method = table["method"].str.extract(r"^(.*?)(?:_(all|genomics_only))?$")
    table = table.assign(model=method[0], inputs=method[1].fillna(""))
    columns = ["n_patients", "layer", "model", "inputs", "mean", "ci_low", "ci_high", "n_folds", "per_fold"]
    return table[table["model"].isin(CURVE_METHODS)][columns].reset_index(drop=True)


def gains_over_ridge(curve: pd.DataFrame, models: Sequence[str] = ("lpm", "deep")) -> pd.DataFrame:
    """Per size, target layer, inputs and model: R^2 minus ridge's on the same folds, the mean with its
    95% t-interval over folds (paired by fold) and the number of folds where the model is ahead."""
    per_fold = curve.set_index(["n_patients", "layer", "inputs", "model"])["per_fold"].dropna()
    rows = []
    for (n_patients, layer, inputs, model), values in per_fold.items():
        if model not in models:
            continue
        gain = _fold_values(values) - _fold_values(per_fold[(n_patients, layer, inputs, "ridge")])
        mean, low, high = mean_interval(gain)
        rows.append(
            {
                "n_patients": n_patients,
                "layer": layer,
                "inputs": inputs,
                "model": model,
                "gain": mean,
                "ci_low": low,
                "ci_high": high,
                "folds_ahead": f"{int((gain > 0).sum())}/{len(gain)}",
            }
        )
    return pd.DataFrame(rows)


def _fold_values(per_fold: str) -> np.ndarray:
    return np.array([float(v) for v in per_fold.split(";")])


def gain_sentence(gains: pd.DataFrame, margin: float = 0.01) -> str:
    """Where each model is clearly ahead of ridge (by more than `margin`, its interval above zero), and
    where it is clearly behind, in words."""
    names = {"lpm": "The LPM", "deep": "The deep path alone"}
    parts = []
    for model, rows in gains.groupby("model", sort=False):
        ahead = rows[(rows["gain"] > margin) & (rows["ci_low"] > 0)]
        behind = rows[(rows["gain"] < -margin) & (rows["ci_high"] < 0)]
        listed = f": {'; '.join(map(_point, ahead.itertuples()))}." if len(ahead) else "."
        parts.append(
            f"{names.get(model, model)} is ahead of ridge by more than {margin} with a 95% interval "
            f"above zero on {len(ahead)} of {len(rows)} (size, layer, inputs) points{listed} "
            f"It is clearly behind on {len(behind)}."
        )
    return " ".join(parts)


def _point(row) -> str:
    return (
        f"{row.layer} from {row.inputs.replace('_', ' ')} inputs at {row.n_patients} patients "
        f"({row.gain:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}])"
    )
