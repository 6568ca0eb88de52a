"""Fitting one Latent Perturbation Model: AdamW, cosine annealing, clipping, early stopping."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lpmlib.model import LatentPerturbationModel, ModelConfig, lpm_loss, sample_ptm_mask
from lpmlib.tensors import CohortTensors

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; the defaults are those of the method's reference implementation."""

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10  # epochs without a better validation loss before stopping
    grad_clip: float = 1.0
    modality_dropout: float = 0.2
    validation_fraction: float = 0.1  # of each training fold, for early stopping
    device: str = "auto"  # "auto" takes CUDA when present, else the CPU

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainSettings.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("modality_dropout", "validation_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainSettings.{name} must be in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    model: LatentPerturbationModel  # in eval mode, with the weights of the best validation epoch
    history: pd.DataFrame  # one row per epoch: losses and learning rate
    best_epoch: int


def resolve_device(device: str) -> torch.device:
    """'auto' is CUDA when available, else the CPU; any other value is handed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_deterministic(seed: int) -> None:
    """Seed every generator and ask torch for deterministic kernels on one thread.

    One thread per fit makes results independent of how many folds run side by side.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def _batch_loss(model, batch: CohortTensors, mask: torch.Tensor, config: ModelConfig) -> dict:
    ptms = {name: batch.layers[name] for name in config.ptm_dims}
    output = model(batch.drivers, batch.grade, ptms, mask)
    return lpm_loss(output, batch.layers, mask, config)


def evaluation_mask(n: int, n_ptm: int, seed: int, modality_dropout: float) -> torch.Tensor:
    """A fixed draw of the training masking patterns, so validation losses are comparable."""
    return sample_ptm_mask(n, n_ptm, torch.Generator().manual_seed(seed), modality_dropout)


def fit(
    config: ModelConfig,
    train: CohortTensors,
    validation: CohortTensors,
    settings: TrainSettings = TrainSettings(),
    seed: int = 42,
    progress: Progress | None = None,
) -> FitResult:
    """Train on `train`, stop early on `validation`'s loss, and return the best model."""
    make_deterministic(seed)
    device = resolve_device(settings.device)
    model = LatentPerturbationModel(config).to(device)
    train, validation = train.to(device), validation.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
    generator = torch.Generator().manual_seed(seed)
    n_ptm = len(config.ptm_dims)
    validation_mask = evaluation_mask(len(validation), n_ptm, seed + 1, settings.modality_dropout).to(device)

    best_loss, best_epoch, best_state, rows = float("inf"), 0, copy.deepcopy(model.state_dict()), []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        totals = []
        for start in range(0, len(train), settings.batch_size):
            batch = train.subset(order[start : start + settings.batch_size])
            mask = sample_ptm_mask(len(batch), n_ptm, generator, settings.modality_dropout).to(device)
            losses = _batch_loss(model, batch, mask, config)
            optimiser.zero_grad()
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimiser.step()
            totals.append(losses["total"].item() * len(batch))
        learning_rate = schedule.get_last_lr()[0]
        schedule.step()
        model.eval()
        with torch.no_grad():
            validation_loss = _batch_loss(model, validation, validation_mask, config)["total"].item()
        row = {"epoch": epoch, "train_loss": sum(totals) / len(train), "validation_loss": validation_loss,
               "learning_rate": learning_rate}  # fmt: skip
        rows.append(row)
        if progress is not None:
            progress(row)
        if validation_loss < best_loss:
            best_loss, best_epoch, best_state = validation_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    return FitResult(model, pd.DataFrame(rows), best_epoch)
