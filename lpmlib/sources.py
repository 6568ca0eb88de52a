"""Where a run's cohort comes from: a folder in the seed layout (simulated, or the user's own) or a
manifest of raw files. The workflow asks the run's source (`cohort_source`) and never which kind it is.
"""

from __future__ import annotations

import difflib
import functools
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pandas as pd

from lpmlib.artifacts import folder_hashes
from lpmlib.cohort import SEED_DRIVERS, Cohort, read_seed_layout
from lpmlib.manifest import KnownEffect, RawCohort, read_manifest
from lpmlib.params import ParameterError, RunParams
from lpmlib.simulate import LAYERS, read_layer_truth, read_truth, simulate_cohort, write_simulated_cohort


class CohortSource(ABC):
    """A run's cohort: its patients, what each fold trains on, and what is known about it."""

    def __init__(self, params: RunParams) -> None:
        self.params = params

    @property
    @abstractmethod
    def location(self) -> str:
        """The folder or file the cohort is read from."""

    @abstractmethod
    def cohort(self) -> Cohort:
        """Every patient, ready for the model: what the data chapter describes."""

    @abstractmethod
    def input_hashes(self) -> dict[str, str]:
        """SHA-256 of every input file, for the run's record."""

    @abstractmethod
    def training_input(self, cohort: Cohort) -> Cohort | RawCohort:
        """What the folds are trained on (each fold's view comes from its `fold_cohort`)."""

    @abstractmethod
    def describe(self, cohort: Cohort) -> str:
        """One phrase naming the cohort, for the book's prose."""

    def check(self, project: Path = Path(".")) -> None:
        """Before anything runs: the cohort is read, so that every data error surfaces now, and the
        parameters that name its drivers and layers are checked against it."""
        drivers, layers = self.names(project)
        for name in ("knockout_gene", "fusion_gene"):
            _one_of(self.params, name, drivers, "driver")
        optional = {"colour_driver": ("driver", drivers), "pca_layer": ("layer", layers)}
        for name, (kind, valid) in (optional | {"endpoint": ("layer", layers)}).items():
            if getattr(self.params, name):  # "" takes the cohort's own default
                _one_of(self.params, name, valid, kind)

    @abstractmethod
    def names(self, project: Path) -> tuple[list[str], list[str]]:
        """The cohort's drivers and layers, read (and so checked) from its files."""

    def known_effects(self) -> list[KnownEffect]:
        """Known biology for Q1 to reproduce."""
        return []

    def endpoint(self) -> str:
        """The layer Q6 predicts when the run does not name one."""
        return "metabolome"

    def planted_truth(self, project: Path = Path(".")) -> bool:
        """Whether the cohort was simulated with a truth to validate the answers against."""
        return False

    def layer_truth(self) -> pd.DataFrame | None:
        """The planted per-layer truth (noise ceilings...), None without one."""
        return None


class SeedLayoutSource(CohortSource):
    """A folder in the seed layout; the default cohort is simulated into it when it is missing."""

    @property
    def location(self) -> str:
        return self.params.data_dir

    def cohort(self) -> Cohort:
        data_dir = Path(self.params.data_dir)
        if not data_dir.exists():
            if not self.params.simulate_if_missing:
                raise FileNotFoundError(
                    f"cohort folder '{data_dir}' not found (set simulate_if_missing=True to simulate one)"
                )
            write_simulated_cohort(simulate_cohort(self.params.simulation_config()), data_dir)
        else:
            self.params.check_simulated_folder(data_dir)
        return read_seed_layout(data_dir, n_folds=self.params.n_folds)

    def input_hashes(self) -> dict[str, str]:
        return folder_hashes(self.params.data_dir)

    def check(self, project: Path = Path(".")) -> None:
        """A simulated folder must also hold the cohort the run's simulation parameters ask for."""
        if (project / self.params.data_dir).is_dir():
            self.params.check_simulated_folder(project / self.params.data_dir)
        super().check(project)

    def names(self, project: Path) -> tuple[list[str], list[str]]:
        folder = project / self.params.data_dir
        if not folder.is_dir():  # simulated by the first chapter
            return list(SEED_DRIVERS), list(LAYERS)
        cohort = read_seed_layout(folder, n_folds=self.params.n_folds)
        return cohort.driver_names, list(cohort.layers)

    def training_input(self, cohort: Cohort) -> Cohort:
        return cohort

    def describe(self, cohort: Cohort) -> str:
        if self.planted_truth():
            return (
                f"the simulated cohort in {self.location} ({cohort.n_patients} patients, with planted truth)"
            )
        return f"the cohort in {self.location} ({cohort.n_patients} patients)"

    def planted_truth(self, project: Path = Path(".")) -> bool:
        """Whether the folder holds the simulator's truth (a truth.json of another kind is an error)."""
        return read_truth(project / self.params.data_dir) is not None

    def layer_truth(self) -> pd.DataFrame | None:
        """The simulator's per-layer truth, None without a planted truth (a stray truth table alone)."""
        return read_layer_truth(self.params.data_dir) if self.planted_truth() else None


class ManifestSource(CohortSource):
    """A manifest of raw files: every fold preprocesses its own training patients."""

    @property
    def location(self) -> str:
        return self.params.manifest

    @property
    def raw(self) -> RawCohort:
        """The raw cohort (read once per process)."""
        return _read_manifest_once(
            str(Path(self.params.manifest).resolve()), self.params.raw_data_dir or None
        )

    def cohort(self) -> Cohort:
        """Preprocessed on all tumours together, which serves description only: training and every question
        use each fold's own view, fitted on that fold's training patients."""
        return self.raw.fold_cohort(np.arange(self.raw.n_patients))

    def input_hashes(self) -> dict[str, str]:
        return self.raw.input_hashes()

    def training_input(self, cohort: Cohort) -> RawCohort:
        return self.raw

    def describe(self, cohort: Cohort) -> str:
        return (
            f"{self.raw.name}, read from raw files by the manifest {self.location} ({cohort.n_patients} "
            f"tumours in every file, {self.raw.counts.get('normals', 0)} normal samples): a real cohort, "
            "with no planted truth to validate against"
        )

    def known_effects(self) -> list[KnownEffect]:
        return self.raw.known_effects

    def names(self, project: Path) -> tuple[list[str], list[str]]:
        return list(self.raw.drivers.columns), list(self.raw.layers)

    def endpoint(self) -> str:
        return self.raw.endpoint


@functools.lru_cache(maxsize=2)
def _read_manifest_once(manifest: str, raw_data_dir: str | None) -> RawCohort:
    return read_manifest(manifest, raw_data_dir)


def cohort_source(params: RunParams) -> CohortSource:
    """The run's source: its manifest when it names one, else its seed-layout folder."""
    return ManifestSource(params) if params.manifest else SeedLayoutSource(params)


def _one_of(params: RunParams, name: str, valid: list[str], kind: str) -> None:
    """The parameter `name` must name one of the cohort's drivers (or layers)."""
    value = getattr(params, name)
    if value not in valid:
        close = difflib.get_close_matches(value, valid, n=1)
        guess = f"Did you mean '{close[0]}'? " if close else ""
        raise ParameterError(
            f"parameter {name}={value!r} is not a {kind} of this cohort. {guess}"
            f"Give -p {name}=<{kind}>, one of: {', '.join(valid)}."
        )
