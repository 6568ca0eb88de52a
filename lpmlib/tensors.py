"""A cohort as model-ready tensors, standardised with statistics of the training patients only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lpmlib.cohort import Cohort


@dataclass(frozen=True)
class LayerScaler:
    """Centre each feature and divide a whole layer by one scale (its root mean feature variance).

    One scale per layer keeps the layer's principal components in their natural proportions (so the
    reconstruction loss weighs them by variance) while putting every layer on a comparable footing.
    """

    mean: dict[str, np.ndarray]
    scale: dict[str, float]

    @classmethod
    def fit(cls, cohort: Cohort, rows: np.ndarray) -> LayerScaler:
        mean, scale = {}, {}
        for name, layer in cohort.layers.items():
            values = layer.values.to_numpy(dtype=np.float64)[rows]
            mean[name] = values.mean(axis=0)
            scale[name] = float(np.sqrt(values.var(axis=0).mean())) or 1.0
        return cls(mean, scale)

    def standardise(self, name: str, values: np.ndarray) -> np.ndarray:
        return (values - self.mean[name]) / self.scale[name]

    def original_units(self, name: str, values: np.ndarray) -> np.ndarray:
        return values * self.scale[name] + self.mean[name]


@dataclass(frozen=True)
class CohortTensors:
    """Drivers, grade and every layer of some patients, as float32/long tensors built once."""

    drivers: Tensor  # (n, n_drivers) float 0/1
    grade: Tensor  # (n,) long
    layers: dict[str, Tensor]  # standardised values, (n, n_features)

    @classmethod
    def build(
        cls, cohort: Cohort, rows: np.ndarray, scaler: LayerScaler, dtype: torch.dtype = torch.float32
    ) -> CohortTensors:
        layers = {
            name: torch.as_tensor(
                scaler.standardise(name, layer.values.to_numpy(dtype=np.float64)[rows]), dtype=dtype
            )
            for name, layer in cohort.layers.items()
        }
        return cls(
            drivers=torch.as_tensor(cohort.drivers.to_numpy()[rows], dtype=dtype),
            grade=torch.as_tensor(cohort.clinical["grade"].to_numpy()[rows], dtype=torch.long),
            layers=layers,
        )

    def __len__(self) -> int:
        return self.drivers.shape[0]

    def to(self, device: torch.device | str) -> CohortTensors:
        return CohortTensors(
            self.drivers.to(device), self.grade.to(device), {n: t.to(device) for n, t in self.layers.items()}
        )

    @classmethod
    def concat(cls, first: CohortTensors, second: CohortTensors) -> CohortTensors:
        """The patients of both, first then second."""
        return cls(
            torch.cat([first.drivers, second.drivers]),
            torch.cat([first.grade, second.grade]),
            {n: torch.cat([t, second.layers[n]]) for n, t in first.layers.items()},
        )

    def subset(self, index: Tensor) -> CohortTensors:
        """Some rows of every tensor (copies: a split, or an epoch's order)."""
        return CohortTensors(
            self.drivers[index], self.grade[index], {n: t[index] for n, t in self.layers.items()}
        )

    def rows(self, start: int, stop: int) -> CohortTensors:
        """Consecutive rows of every tensor, as views (a mini-batch of an epoch's shuffled copy)."""
        return CohortTensors(
            self.drivers[start:stop],
            self.grade[start:stop],
            {n: t[start:stop] for n, t in self.layers.items()},
        )
