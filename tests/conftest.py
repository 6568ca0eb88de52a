"""Shared fixtures: a small cohort with trained folds, and folds around hand-built models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lpmlib.cohort import Cohort
from lpmlib.cv import FoldResult, fold_splits, run_cv
from lpmlib.simulate import SimulatedCohort, SimulationConfig, simulate_cohort
from lpmlib.tensors import LayerScaler
from lpmlib.train import TrainSettings

SMALL_MODEL = {"latent_dim": 32, "vae_latent_dim": 16}


@pytest.fixture(scope="session")
def small_sim() -> SimulatedCohort:
    """120 simulated patients, 10 components per layer."""
    return simulate_cohort(SimulationConfig(n_patients=120, n_components=10))


@pytest.fixture(scope="session")
def small_folds(small_sim: SimulatedCohort, tmp_path_factory) -> list[FoldResult]:
    """Five folds of a small model trained briefly on `small_sim` (a few seconds)."""
    run_dir = tmp_path_factory.mktemp("small_run")
    return run_cv(small_sim.cohort, run_dir, TrainSettings(epochs=15, patience=5), log=None, **SMALL_MODEL)


def folds_around(model, cohort: Cohort, n_folds: int = 3) -> list[FoldResult]:
    """Folds that all use one given model (e.g. a hand-built module with the LPM's forward signature)."""
    folds = []
    for k, (train, test) in enumerate(fold_splits(cohort.n_patients, n_folds, seed=0), start=1):
        folds.append(FoldResult(k, model, LayerScaler.fit(cohort, train), train, test, pd.DataFrame(), {}))
    return folds


def identity_scaler(cohort: Cohort) -> LayerScaler:
    """A scaler that changes nothing, so hand-built models speak in the layers' own units."""
    return LayerScaler(
        mean={n: np.zeros(layer.n_features) for n, layer in cohort.layers.items()},
        scale={n: 1.0 for n in cohort.layers},
    )
