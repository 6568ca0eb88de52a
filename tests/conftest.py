"""Shared fixtures: a small cohort with trained folds, and folds around hand-built models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lpmlib.cohort import Cohort
from lpmlib.cv import FoldResult, fold_splits, predict_patterns, run_cv
from lpmlib.model import LPMOutput
from lpmlib.simulate import SimulatedCohort, SimulationConfig, simulate_cohort, write_simulated_cohort
from lpmlib.tensors import CohortTensors, LayerScaler
from lpmlib.train import TrainSettings

SMALL_MODEL = {"latent_dim": 32, "vae_latent_dim": 16}
RNA_DRIVER = 3  # the only driver that feeds the "rna" layer of KnownModel


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files that hold a slow test first (each file keeps its own order), so the longest start at once."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def truth_cohort(tmp_path_factory) -> Path:
    """A tiny simulated cohort folder with its planted truth, so the validation chapter applies. Tests
    that change it work on a copy."""
    config = SimulationConfig(
        n_patients=20, n_components=4, n_ptm_features=8, n_metabolome_features=8, monte_carlo_draws=2
    )
    return write_simulated_cohort(simulate_cohort(config), tmp_path_factory.mktemp("truth") / "cohort")


@pytest.fixture(scope="session")
def small_sim() -> SimulatedCohort:
    """120 simulated patients, 10 components per layer."""
    return simulate_cohort(SimulationConfig(n_patients=120, n_components=10))


@pytest.fixture(scope="session")
def small_folds(small_sim: SimulatedCohort, tmp_path_factory) -> list[FoldResult]:
    """Five folds of a small model trained briefly on `small_sim` (a few seconds)."""
    run_dir = tmp_path_factory.mktemp("small_run")
    return run_cv(small_sim.cohort, run_dir, TrainSettings(epochs=15), log=None, **SMALL_MODEL)


def folds_around(model, cohort: Cohort, n_folds: int = 3) -> list[FoldResult]:
    """Folds that all use one given model (e.g. a hand-built module with the LPM's forward signature)."""
    folds = []
    for k, (train, test) in enumerate(fold_splits(cohort.n_patients, n_folds, seed=0), start=1):
        folds.append(
            FoldResult(
                k, model, LayerScaler.fit(cohort, train), train, test, pd.DataFrame(), {}, cohort=cohort
            )
        )
    return folds


def identity_scaler(cohort: Cohort) -> LayerScaler:
    """A scaler that changes nothing, so hand-built models speak in the layers' own units."""
    return LayerScaler(
        mean={n: np.zeros(layer.n_features) for n, layer in cohort.layers.items()},
        scale={n: 1.0 for n in cohort.layers},
    )


class KnownModel(nn.Module):
    """The LPM's forward signature with outputs known in closed form.

    rna = drivers[:, 3] * (1, 2, ..., n); metabolome = number of drivers (every feature);
    protein = grade (every feature); each PTM layer = its own input where observed, 0 where masked;
    z_state = the genome itself, so an edited genome can be read off z_state.
    """

    def __init__(self, cohort: Cohort) -> None:
        super().__init__()
        self.dims = {name: layer.n_features for name, layer in cohort.layers.items()}
        self.ptm_names = cohort.ptm_names
        self.rna_vector = torch.arange(1, self.dims["rna"] + 1, dtype=torch.float32)
        self.calls = 0

    def forward(self, drivers, grade, ptms, ptm_mask) -> LPMOutput:
        self.calls += 1
        n = drivers.shape[0]
        predictions = {name: torch.zeros(n, dim) for name, dim in self.dims.items()}
        predictions["rna"] = drivers[:, RNA_DRIVER : RNA_DRIVER + 1] * self.rna_vector
        predictions["metabolome"] = drivers.sum(dim=1, keepdim=True).expand(n, self.dims["metabolome"])
        predictions["protein"] = grade.float()[:, None].expand(n, self.dims["protein"])
        for i, name in enumerate(self.ptm_names):
            predictions[name] = torch.where(ptm_mask[:, i : i + 1], ptms[name], 0.0)
        nothing = torch.zeros(n, 1)
        return LPMOutput(
            predictions, drivers.clone(), drivers.clone(), {}, {}, nothing, nothing, torch.zeros(n, 1, 1)
        )

    def under_masks(self, drivers, grade, ptms, masks):
        """`LatentPerturbationModel.under_masks`: a pass per named mask."""
        for name, mask in masks.items():
            yield name, self(drivers, grade, ptms, mask.expand(len(drivers), -1))


@pytest.fixture
def known(small_sim):
    """The cohort, a KnownModel and three folds around it that change no units, with their
    held-out predictions under every masking pattern stored as training would."""
    cohort = small_sim.cohort
    model = KnownModel(cohort)
    folds = folds_around(model, cohort)
    for fold in folds:
        fold.scaler = identity_scaler(cohort)
        data = CohortTensors.build(cohort, fold.test_rows, fold.scaler)
        fold.predictions = dict(predict_patterns(model, data, fold.scaler, cohort.ptm_names))
    model.calls = 0
    return cohort, model, folds
