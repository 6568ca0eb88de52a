"""The steps the notebooks share: the run folder, and the cohort a run works on."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lpmlib.artifacts import folder_hashes, write_json, write_table
from lpmlib.cohort import Cohort, read_seed_layout
from lpmlib.cohort_size import r2_by_cohort_size
from lpmlib.cv import FoldResult, load_folds, run_cv
from lpmlib.manifest import KnownEffect, RawCohort, read_manifest
from lpmlib.params import RunParams
from lpmlib.questions.permutation import knockout_permutation_null
from lpmlib.simulate import (
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
    """The run's cohort, ready for the model, with its location and input hashes recorded in the run
    folder so that every later notebook works on the same data.

    A seed-layout folder is read (simulated first when asked and absent). A manifest's raw cohort is
    preprocessed here on all its tumours together, which serves description only: training and every
    question use each fold's own view, fitted on that fold's training patients (`training_source`).
    """
    if params.manifest:
        raw = raw_cohort(params)
        cohort, inputs = raw.fold_cohort(np.arange(raw.n_patients)), raw.input_hashes()
    else:
        cohort, inputs = _seed_layout_cohort(params), folder_hashes(params.data_dir)
    write_json(
        RunFolder.of(params).path / "cohort.json",
        {
            "source": params.manifest or params.data_dir,
            "planted_truth": has_planted_truth(params),
            "n_patients": cohort.n_patients,
            "n_dropped": len(cohort.dropped),
            "input_sha256": inputs,
        },
    )
    return cohort


def _seed_layout_cohort(params: RunParams) -> Cohort:
    data_dir = Path(params.data_dir)
    if not data_dir.exists():
        if not params.simulate_if_missing:
            raise FileNotFoundError(
                f"cohort folder '{data_dir}' not found (set simulate_if_missing=True to simulate one)"
            )
        write_simulated_cohort(simulate_cohort(params.simulation_config()), data_dir)
    else:
        params.check_simulated_folder(data_dir)
    return read_seed_layout(data_dir, n_folds=params.n_folds)


def raw_cohort(params: RunParams) -> RawCohort:
    """The raw cohort of the run's manifest (read once per process)."""
    return _read_manifest_once(str(Path(params.manifest).resolve()), params.raw_data_dir or None)


@functools.lru_cache(maxsize=2)
def _read_manifest_once(manifest: str, raw_data_dir: str | None) -> RawCohort:
    return read_manifest(manifest, raw_data_dir)


def training_source(params: RunParams, cohort: Cohort) -> Cohort | RawCohort:
    """What the folds are trained on: the raw cohort of a manifest (each fold preprocesses its own
    training patients), else the cohort itself."""
    return raw_cohort(params) if params.manifest else cohort


def known_effects(params: RunParams) -> list[KnownEffect]:
    """The known biology a manifest lists for Q1 to reproduce (none for a seed-layout cohort)."""
    return raw_cohort(params).known_effects if params.manifest else []


def has_planted_truth(params: RunParams, project: Path = Path(".")) -> bool:
    """True for a simulated cohort, whose answers the validation chapter checks against the truth."""
    return not params.manifest and read_truth(project / params.data_dir) is not None


def validation_targets(params: RunParams) -> pd.DataFrame | None:
    """The validation chapter's targets of this run (None when the cohort has no planted truth)."""
    path = RunFolder.of(params).table_path("validation_targets")
    return pd.read_csv(path) if has_planted_truth(params) and path.is_file() else None


def endpoint(params: RunParams) -> str:
    """Q6's endpoint: the parameter, else the manifest's endpoint, else the metabolome."""
    if params.endpoint:
        return params.endpoint
    return raw_cohort(params).endpoint if params.manifest else "metabolome"


def cohort_description(params: RunParams, cohort: Cohort) -> str:
    """One phrase naming the run's cohort, for the book's prose."""
    if params.manifest:
        raw = raw_cohort(params)
        return (
            f"{raw.name}, read from raw files by the manifest {params.manifest} ({cohort.n_patients} "
            f"tumours in every file, {raw.counts.get('normals', 0)} normal samples): a real cohort, with "
            "no planted truth to validate against"
        )
    if has_planted_truth(params):
        return f"the simulated cohort in {params.data_dir} ({cohort.n_patients} patients, with planted truth)"
    return f"the cohort in {params.data_dir} ({cohort.n_patients} patients)"


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
        training_source(params, cohort),
        Path(params.run_dir),
        params.train_settings(),
        params.n_folds,
        params.seed,
        params.n_jobs,
        log,
        n_seeds=params.n_seeds,
        **params.hyperparameters(),
    )


def layer_truth(params: RunParams) -> pd.DataFrame | None:
    """The planted per-layer truth of a simulated cohort (noise ceilings...), None for real cohorts."""
    return None if params.manifest else read_layer_truth(params.data_dir)


def trained_folds(params: RunParams, cohort: Cohort) -> list[FoldResult]:
    """The folds the training chapter left in the run folder (an error if it has not run)."""
    return load_folds(
        training_source(params, cohort),
        Path(params.run_dir),
        params.n_folds,
        params.seed,
        n_seeds=params.n_seeds,
    )


def knockout_null(params: RunParams, cohort: Cohort, gene: str) -> pd.DataFrame:
    """Q1's permutation null for `gene` with the run's training settings (empty when n_permutations=0)."""
    return knockout_permutation_null(
        training_source(params, cohort),
        gene,
        Path(params.run_dir),
        params.train_settings(),
        params.n_permutations,
        seed=params.seed,
        n_jobs=params.n_jobs,
        n_folds=params.n_folds,
        n_seeds=params.n_seeds,
        **params.hyperparameters(),
    )


def cohort_size_curve(params: RunParams, log=print) -> pd.DataFrame:
    """Held-out R^2 of the LPM and its baselines on simulated cohorts of each of `curve_sizes` patients,
    drawn from the run's simulated world (its simulation seed and nonlinearity) and trained with the run's
    settings; checkpoints under the run folder's `cohort_size/`."""
    return r2_by_cohort_size(
        sorted(params.curve_sizes),
        Path(params.run_dir) / "cohort_size",
        params.train_settings(),
        params.n_folds,
        params.seed,
        params.simulation_seed,
        params.nonlinearity,
        params.n_jobs,
        log,
        **params.hyperparameters(),
    )
