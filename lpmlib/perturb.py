"""The counterfactual engine every question shares: edit the genome and/or mask PTM layers, run a
trained fold's model on its held-out patients, and read every layer and z_state; and the fold's
normal-tissue state, where a cohort has normal samples.

Edits of all drivers for all patients run as one batched forward pass, not a loop over genes.
Outputs are in the layers' original units (the fold's scaler undone), z_state in model units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from lpmlib.cohort import Cohort
from lpmlib.cv import FoldResult
from lpmlib.model import LatentPerturbationModel
from lpmlib.tensors import CohortTensors, LayerScaler

Outputs = dict[str, np.ndarray]  # "z_state" and every layer name -> (n, dim)
EditKind = Literal["knockout", "only", "wild_type"]
Z_STATE = "z_state"


def held_out(fold: FoldResult) -> CohortTensors:
    """The fold's held-out patients as model inputs, standardised with the fold's training statistics."""
    return CohortTensors.build(fold.cohort, fold.test_rows, fold.scaler)


def observed_held_out(fold: FoldResult, layer: str) -> np.ndarray:
    """The layer's true values for the fold's held-out patients, in original units."""
    return fold.cohort.layers[layer].values.to_numpy(dtype=np.float64)[fold.test_rows]


def ptm_mask(n: int, ptm_names: list[str], masked: list[str] | None = None) -> torch.Tensor:
    """A (n, n_ptm) observation mask: True where observed; `masked=None` masks every PTM layer."""
    hidden = set(ptm_names if masked is None else masked)
    unknown = hidden - set(ptm_names)
    if unknown:
        raise KeyError(f"unknown PTM layer(s) {sorted(unknown)}; valid: {', '.join(ptm_names)}")
    row = torch.tensor([name not in hidden for name in ptm_names], dtype=torch.bool)
    return row.expand(n, -1).clone()


@torch.no_grad()
def run_model(
    model: LatentPerturbationModel,
    scaler: LayerScaler,
    drivers: torch.Tensor,
    grade: torch.Tensor,
    ptms: dict[str, torch.Tensor],
    mask: torch.Tensor,
) -> Outputs:
    """One evaluation-mode forward pass; predictions back in original units, plus z_state."""
    model.eval()
    output = model(drivers, grade, ptms, mask)
    result = {name: scaler.original_units(name, p.double().numpy()) for name, p in output.predictions.items()}
    result[Z_STATE] = output.z_state.double().numpy()
    return result


def predict_masked(fold: FoldResult, masked: list[str] | None = None) -> Outputs:
    """Held-out predictions with the named PTM layers masked (None: all masked, the genomics-only path)."""
    cohort = fold.cohort
    data = held_out(fold)
    mask = ptm_mask(len(data), cohort.ptm_names, masked)
    ptms = {name: data.layers[name] for name in cohort.ptm_names}
    return run_model(fold.model, fold.scaler, data.drivers, data.grade, ptms, mask)


def normal_inputs(view: Cohort, scaler: LayerScaler) -> tuple[dict[str, torch.Tensor], torch.Tensor] | None:
    """The normal samples' standardised PTM inputs and observation mask (n_normals, n_ptm): a PTM
    layer a sample lacks is masked (input 0). None when no PTM layer has normal samples."""
    ptms = [name for name in view.ptm_names if name in view.normals]
    if not ptms:
        return None
    samples = pd.Index(dict.fromkeys(s for name in ptms for s in view.normals[name].index))
    inputs, observed = {}, []
    for name in view.ptm_names:
        frame = view.normals.get(name, pd.DataFrame(columns=view.layers[name].values.columns))
        seen = samples.isin(frame.index)
        values = scaler.standardise(name, frame.reindex(samples).to_numpy(dtype=np.float64))
        inputs[name] = torch.as_tensor(np.where(seen[:, None], values, 0.0), dtype=torch.float32)
        observed.append(seen)
    return inputs, torch.as_tensor(np.column_stack(observed))


def normal_state(fold: FoldResult) -> np.ndarray | None:
    """The fold's normal-tissue state: the mean z_state of the normal samples (see `normal_inputs`),
    run through the fold's model as wild-type genomes (all drivers 0) of unknown grade (0: normal
    tissue has no tumour grade). None when no PTM layer has normal samples, since with every PTM
    masked the state would be the wild type's. Normals are never training data: every fold uses all.
    """
    view = fold.cohort
    normals = normal_inputs(view, fold.scaler)
    if normals is None:
        return None
    inputs, mask = normals
    drivers = torch.zeros(len(mask), len(view.driver_names))
    grade = torch.zeros(len(mask), dtype=torch.long)
    return run_model(fold.model, fold.scaler, drivers, grade, inputs, mask)[Z_STATE].mean(axis=0)


def edit_genome(drivers: np.ndarray, column: int, kind: EditKind) -> np.ndarray:
    """The genome after one edit: `knockout` sets driver `column` to 0, `only` keeps it alone, `wild_type`
    clears all."""
    edited = drivers.copy()
    if kind == "knockout":
        edited[:, column] = 0
    elif kind == "only":
        keep = edited[:, column].copy()
        edited[:] = 0
        edited[:, column] = keep
    elif kind == "wild_type":
        edited[:] = 0
    else:
        raise ValueError(f"unknown edit kind {kind!r}; use knockout, only or wild_type")
    return edited


@dataclass
class DriverEdit:
    """One driver's edit over its held-out carriers: model outputs before and after."""

    driver: str
    rows: np.ndarray  # positions of the carriers within the fold's held-out patients
    baseline: Outputs  # the carriers' own genomes
    edited: Outputs  # the edited genomes
    non_carriers: np.ndarray  # positions of the held-out patients known not to carry it

    @property
    def n_carriers(self) -> int:
        return len(self.rows)


def edit_drivers(fold: FoldResult, kind: EditKind, drivers: list[str] | None = None) -> dict[str, DriverEdit]:
    """Apply one kind of edit to each driver's held-out carriers, all in one genomics-only forward pass.

    Every PTM layer is masked: the in-silico cell runs on genomics and grade alone. A driver without
    carriers in the fold gets an edit with zero rows.
    """
    cohort = fold.cohort
    names = cohort.driver_names if drivers is None else drivers
    for name in names:
        cohort.driver(name)  # an unknown name is an error listing the valid ones
    genome = cohort.drivers.to_numpy(dtype=np.float32)[fold.test_rows]
    grade = cohort.clinical["grade"].to_numpy()[fold.test_rows]
    carriers = {name: np.flatnonzero(genome[:, cohort.driver_names.index(name)] == 1) for name in names}
    before = np.concatenate([genome[carriers[n]] for n in names])
    after = np.concatenate(
        [edit_genome(genome[carriers[n]], cohort.driver_names.index(n), kind) for n in names]
    )
    grades = np.concatenate([grade[carriers[n]] for n in names] * 2)
    stacked = torch.as_tensor(np.concatenate([before, after]))
    n = len(stacked)
    zeros = {p: torch.zeros(n, cohort.layers[p].n_features) for p in cohort.ptm_names}
    outputs = run_model(
        fold.model,
        fold.scaler,
        stacked,
        torch.as_tensor(grades, dtype=torch.long),
        zeros,
        ptm_mask(n, cohort.ptm_names),
    )
    edits, start, half = {}, 0, len(before)
    for name in names:
        stop = start + len(carriers[name])
        edits[name] = DriverEdit(
            name,
            carriers[name],
            baseline={k: v[start:stop] for k, v in outputs.items()},
            edited={k: v[half + start : half + stop] for k, v in outputs.items()},
            non_carriers=np.flatnonzero(cohort.non_carriers(name)[fold.test_rows]),
        )
        start = stop
    return edits
