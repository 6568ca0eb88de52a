"""The steps the notebooks share: the run folder, and the cohort a run works on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lpmlib.artifacts import folder_hashes, write_json, write_table
from lpmlib.cohort import Cohort, read_seed_layout
from lpmlib.cv import FoldResult, load_folds, run_cv
from lpmlib.params import RunParams
from lpmlib.questions.permutation import knockout_permutation_null
from lpmlib.simulate import (
    SimulationConfig,
    read_layer_truth,
    read_truth,
    simulate_cohort,
    write_simulated_cohort,
)


@dataclass(frozen=True)
class RunFolder:
    """The folder where one run keeps its tables, figures, checkpoints and executed notebooks."""

    path: Path

    @classmethod
    def of(cls, params: RunParams) -> RunFolder:
        path = Path(params.run_dir)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def table_path(self, name: str) -> Path:
        return self.path / "tables" / f"{name}.csv"

    def save_table(self, name: str, table: pd.DataFrame, index: bool = True) -> Path:
        return write_table(self.table_path(name), table, index=index)

    def load_table(self, name: str, index_col: int | None = 0) -> pd.DataFrame:
        return pd.read_csv(self.table_path(name), index_col=index_col)


def prepare_cohort(params: RunParams) -> Cohort:
    """Read the cohort of `params.data_dir`, simulating it first when asked and it is absent.

    The cohort's location and input hashes are recorded in the run folder so that every later
    notebook works on the same data.
    """
    data_dir = Path(params.data_dir)
    if not data_dir.exists():
        if not params.simulate_if_missing:
            raise FileNotFoundError(
                f"cohort folder '{data_dir}' not found (set simulate_if_missing=True to simulate one)"
            )
        config = SimulationConfig(n_patients=params.n_patients, seed=params.simulation_seed)
        write_simulated_cohort(simulate_cohort(config), data_dir)
    cohort = read_seed_layout(data_dir, n_folds=params.n_folds)
    run = RunFolder.of(params)
    write_json(
        run.path / "cohort.json",
        {
            "data_dir": str(data_dir),
            "simulated": read_truth(data_dir) is not None,
            "n_patients": cohort.n_patients,
            "n_dropped": len(cohort.dropped),
            "input_sha256": folder_hashes(data_dir),
        },
    )
    return cohort


def driver_prevalence(cohort: Cohort) -> pd.DataFrame:
    """Carriers and prevalence of every driver, most frequent first."""
    carriers = cohort.drivers.sum().astype(int)
    table = pd.DataFrame({"carriers": carriers, "prevalence": carriers / cohort.n_patients})
    return table.rename_axis("driver").sort_values("carriers", ascending=False, kind="stable")


def driver_cooccurrence(cohort: Cohort) -> pd.DataFrame:
    """Patients carrying both drivers of each pair (the diagonal: carriers of each driver)."""
    drivers = cohort.drivers.astype(int)
    return drivers.T @ drivers


def train_folds(params: RunParams, cohort: Cohort, log=print) -> list[FoldResult]:
    """Cross-validated training with the run's settings (finished folds are reused)."""
    return run_cv(
        cohort, Path(params.run_dir), params.train_settings(), params.n_folds, params.seed,
        params.n_jobs, log, **params.hyperparameters(),
    )  # fmt: skip


def layer_truth(params: RunParams) -> pd.DataFrame | None:
    """The planted per-layer truth of a simulated cohort (noise ceilings...), None for real cohorts."""
    return read_layer_truth(params.data_dir)


def trained_folds(params: RunParams, cohort: Cohort) -> list[FoldResult]:
    """The folds the training chapter left in the run folder (an error if it has not run)."""
    return load_folds(cohort, Path(params.run_dir), params.n_folds, params.seed)


def knockout_null(params: RunParams, cohort: Cohort, gene: str) -> pd.DataFrame:
    """Q1's permutation null for `gene` with the run's training settings (empty when n_permutations=0)."""
    return knockout_permutation_null(
        cohort, gene, Path(params.run_dir), params.train_settings(), params.n_permutations,
        seed=params.seed, n_jobs=params.n_jobs, n_folds=params.n_folds, **params.hyperparameters(),
    )  # fmt: skip
