"""The steps the notebooks share: the run folder, and the cohort a run works on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lpmlib.artifacts import write_json, write_table
from lpmlib.cohort import Cohort
from lpmlib.cohort_size import r2_by_cohort_size
from lpmlib.cv import FoldResult, load_folds, run_cv
from lpmlib.manifest import KnownEffect
from lpmlib.params import RunParams
from lpmlib.questions.permutation import knockout_permutation_null
from lpmlib.sources import cohort_source


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
    """The run's cohort, ready for the model (`sources.CohortSource.cohort`), with its location and input
    hashes recorded in the run folder so that every later notebook works on the same data."""
    source = cohort_source(params)
    cohort = source.cohort()
    write_json(
        RunFolder.of(params).path / "cohort.json",
        {
            "source": source.location,
            "planted_truth": source.planted_truth(),
            "n_patients": cohort.n_patients,
            "n_dropped": len(cohort.dropped),
            "input_sha256": source.input_hashes(),
        },
    )
    return cohort


def known_effects(params: RunParams) -> list[KnownEffect]:
    """The known biology the run's cohort lists for Q1 to reproduce (none for a seed-layout cohort)."""
    return cohort_source(params).known_effects()


def has_planted_truth(params: RunParams, project: Path = Path(".")) -> bool:
    """True for a simulated cohort, whose answers the validation chapter checks against the truth."""
    return cohort_source(params).planted_truth(project)


def validation_targets(params: RunParams) -> pd.DataFrame | None:
    """The validation chapter's targets of this run (None when the cohort has no planted truth)."""
    path = RunFolder.of(params).table_path("validation_targets")
    return pd.read_csv(path) if has_planted_truth(params) and path.is_file() else None


def endpoint(params: RunParams) -> str:
    """Q6's endpoint: the parameter, else the cohort's own (a manifest's endpoint, else the metabolome)."""
    return params.endpoint or cohort_source(params).endpoint()


def cohort_description(params: RunParams, cohort: Cohort) -> str:
    """One phrase naming the run's cohort, for the book's prose."""
    return cohort_source(params).describe(cohort)


def covariate_counts(cohort: Cohort) -> pd.DataFrame:
    """Patients per category of the clinical covariate (grade or stage), each category labelled."""
    counts = cohort.clinical["grade"].value_counts().reindex(list(cohort.grade_labels), fill_value=0)
    return (
        counts.rename(index=cohort.grade_labels)
        .rename_axis(f"{cohort.covariate} category")
        .to_frame("patients")
    )


def driver_prevalence(cohort: Cohort) -> pd.DataFrame:
    """Carriers and prevalence (among the patients of known status) of every driver, most frequent first,
    and the patients of unknown status where a driver has some."""
    carriers = cohort.drivers.sum().astype(int)
    unknown = cohort.unknown_drivers.sum().astype(int)
    table = pd.DataFrame({"carriers": carriers, "prevalence": carriers / (cohort.n_patients - unknown)})
    if unknown.any():
        table["unknown"] = unknown
    return table.rename_axis("driver").sort_values("carriers", ascending=False, kind="stable")


def driver_cooccurrence(cohort: Cohort) -> pd.DataFrame:
    """Patients carrying both drivers of each pair (the diagonal: carriers of each driver)."""
    drivers = cohort.drivers.astype(int)
    return drivers.T @ drivers


def train_folds(params: RunParams, cohort: Cohort, log=print) -> list[FoldResult]:
    """Cross-validated training with the run's settings (finished folds are reused)."""
    return run_cv(
        cohort_source(params).training_input(cohort),
        Path(params.run_dir),
        params.train_settings(),
        params.n_folds,
        params.seed,
        params.n_jobs,
        log,
        n_seeds=params.n_seeds,
        scheduler=params.scheduler,
        **params.hyperparameters(),
    )


def layer_truth(params: RunParams) -> pd.DataFrame | None:
    """The planted per-layer truth of a simulated cohort (noise ceilings...), None for real cohorts."""
    return cohort_source(params).layer_truth()


def trained_folds(params: RunParams, cohort: Cohort) -> list[FoldResult]:
    """The folds the training chapter left in the run folder (an error if it has not run)."""
    return load_folds(
        cohort_source(params).training_input(cohort),
        Path(params.run_dir),
        params.n_folds,
        params.seed,
        n_seeds=params.n_seeds,
    )


def knockout_null(params: RunParams, cohort: Cohort, gene: str) -> pd.DataFrame:
    """Q1's permutation null for `gene` with the run's training settings (empty when n_permutations=0)."""
    return knockout_permutation_null(
        cohort_source(params).training_input(cohort),
        gene,
        Path(params.run_dir),
        params.train_settings(),
        params.n_permutations,
        seed=params.seed,
        n_jobs=params.n_jobs,
        n_folds=params.n_folds,
        n_seeds=params.n_seeds,
        scheduler=params.scheduler,
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
        scheduler=params.scheduler,
        **params.hyperparameters(),
    )
