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

import pandas as pd

from lpmlib.cv import run_cv
from lpmlib.performance import q0_per_fold, q0_summary
from lpmlib.simulate import SimulationConfig, simulate_cohort
from lpmlib.train import TrainSettings

CURVE_METHODS = ("lpm", "deep", "ridge", "reduced_rank_ridge", "noise_ceiling")


def r2_by_cohort_size(
    sizes: Sequence[int], run_dir: str | Path, settings: TrainSettings = TrainSettings(), n_folds: int = 5,
    seed: int = 42, simulation_seed: int = 42, nonlinearity: float = 0.0, n_jobs: int = 1,
    log: Callable[[str], None] | None = None, **hyperparameters,
) -> pd.DataFrame:  # fmt: skip
    """One row per size, target layer, inputs and method: the cross-fold mean variance-weighted R^2 with
    its 95% interval and per-fold values (the noise ceiling has no folds and no inputs)."""
    rows = []
    for n_patients in sizes:
        simulated = simulate_cohort(SimulationConfig(n_patients=n_patients, seed=simulation_seed,
                                                     nonlinearity=nonlinearity))  # fmt: skip
        cohort = simulated.cohort
        folds = run_cv(cohort, Path(run_dir) / f"n{n_patients}", settings, n_folds, seed, n_jobs, log, **hyperparameters)
        summary = q0_summary(q0_per_fold(cohort, folds), simulated.layer_truth.set_index("layer"))
        summary = summary[(summary["metric"] == "r2_variance_weighted") & summary["layer"].isin(cohort.target_names)]
        rows.append(summary.assign(n_patients=n_patients))
    table = pd.concat(rows, ignore_index=True).drop(columns="metric")
    method = table["method"].str.extract(r"^(.*?)(?:_(all|genomics_only))?$")
    table = table.assign(model=method[0], inputs=method[1].fillna(""))
    columns = ["n_patients", "layer", "model", "inputs", "mean", "ci_low", "ci_high", "n_folds", "per_fold"]
    return table[table["model"].isin(CURVE_METHODS)][columns].reset_index(drop=True)


def versus_ridge(curve: pd.DataFrame) -> pd.DataFrame:
    """Sizes x (layer, inputs): the LPM's mean R^2 minus ridge's (positive where the LPM is ahead)."""
    fitted = curve[curve["model"].isin(["lpm", "ridge"])]
    wide = fitted.pivot_table(index=["n_patients", "layer", "inputs"], columns="model", values="mean")
    return (wide["lpm"] - wide["ridge"]).unstack(["layer", "inputs"])
