"""Fitting one Latent Perturbation Model: closed-form anchors, then AdamW over a whole cosine schedule
with clipping, and the read-out of every layer chosen on an inner split.

The training patients are split once into an inner training part (80%) and an inner validation part
(20%). Anchors are fitted in closed form on the inner training part and the network is trained on it for
all `epochs` of the cosine schedule, which ends at a learning rate of zero. At the end, the read-out
(anchor alone, anchor plus a gated residual, or a blend of anchor and direct read-out; see `READ_OUTS`)
of each layer, with other inputs and from genomics only, is chosen by its squared error on the inner
validation patients, leaving the anchor only for a gain larger than 2.7 standard errors. The anchors are
then refitted on all training patients. The residual decoders start at zero and the anchor alone is
always a candidate, so the network can only add what the inner split shows it adds.

There is no early stopping, because it was not stable on small cohorts. On 15-30 inner patients, the
inner error of the deep read-outs moves by less than its noise from epoch to epoch. The epoch it picked
was chance, often one of the first few, and at that epoch the PTM encoders had not yet learned: their
posterior means varied across patients by 1% of the posterior variance (UCEC). At the end of the
schedule the same error was 0.002-0.013 above its minimum (UCEC, the default cohort and 640 simulated
patients), the same read-outs were chosen, and the codes carried signal (`lpmlib.describe.posterior_snr`
2.6-42 against 0.01-0.1). The inner error is still recorded every `READ_OUT_EVERY` epochs and at the
last, in the history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from lpmlib.constraints import Constraints, Interval, Options, Pattern, check_fields
from lpmlib.linear import ESTIMATORS, Inputs, LinearFit, design, genomic_design
from lpmlib.model import (
    INPUTS,
    LatentPerturbationModel,
    ModelConfig,
    evaluation_patterns,
    lpm_loss,
    masking_patterns,
    sample_ptm_mask,
)
from lpmlib.stats import clear_gain
from lpmlib.tensors import CohortTensors

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; the defaults are those of the method's reference implementation."""

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    validation_fraction: float = 0.2  # of each training fold: the inner split that chooses the read-outs
    anchor: str = "reduced_rank_ridge"  # the anchors' estimator: "ridge" or "reduced_rank_ridge"
    device: str = "auto"  # "auto" takes CUDA when present, else the CPU

    CONSTRAINTS: ClassVar[Constraints] = {
        "epochs": Interval(int, 1),
        "batch_size": Interval(int, 1),
        "learning_rate": Interval(float, 0, closed="right"),
        "weight_decay": Interval(float, 0),
        "grad_clip": Interval(float, 0, closed="right"),
        "validation_fraction": Interval(float, 0, 1, closed="neither"),
        "anchor": Options(tuple(ESTIMATORS)),
        "device": Pattern(r"auto|cpu|cuda(:\d+)?|mps", "'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.CONSTRAINTS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    model: LatentPerturbationModel  # in eval mode, trained, with the read-outs chosen on the inner split
    history: pd.DataFrame  # per epoch (0: untrained): losses, the best read-outs' inner error, learning rate
    read_out: pd.DataFrame  # per layer: the chosen read-out and the inner-split errors behind it


def resolve_device(device: str) -> torch.device:
    """'auto' is CUDA when available, else the CPU; any other value is handed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_one_thread(seed: int) -> None:
    """Seed every generator and run torch on one thread: on these small batches more threads cost
    more than they save, and one thread gives the same rounding however many processes run."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.set_num_threads(1)


def make_deterministic(seed: int) -> None:
    """`seed_one_thread`, and deterministic kernels for training (the backward pass).

    One thread per fit makes results independent of how many folds run side by side.
    """
    seed_one_thread(seed)
    torch.use_deterministic_algorithms(True)  # imports torch's compiler (seconds): only where training runs


def _batch_loss(model, batch: CohortTensors, mask: torch.Tensor, config: ModelConfig) -> dict:
    ptms = {name: batch.layers[name] for name in config.ptm_dims}
    output = model(batch.drivers, batch.grade, ptms, mask)
    return lpm_loss(output, batch.layers, mask, config)


@torch.no_grad()
def _validation_loss(model: LatentPerturbationModel, validation: CohortTensors, mask: torch.Tensor) -> float:
    model.eval()
    return _batch_loss(model, validation, mask, model.config)["total"].item()


def evaluation_mask(n: int, n_ptm: int, seed: int) -> torch.Tensor:
    """A fixed draw of the training masking patterns, so validation losses are comparable."""
    return sample_ptm_mask(n, n_ptm, torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Anchors: closed-form linear fits set into the model


def fit_anchors(model: LatentPerturbationModel, data: CohortTensors, estimator: str, seed: int = 0) -> dict:
    """Fit every layer's anchor under every stored pattern on `data` (model units) and set them.

    `seed` fixes the folds of reduced-rank ridge's own cross-validation; at its default the anchors on a
    fold's training patients are exactly Q0's reduced-rank ridge baseline.

    A layer's inputs are the genomics and the PTM layers the pattern shows, never the layer itself. The
    estimator's choices (reduced-rank ridge's rank and alpha) are cross-validated on each layer's two
    evaluation problems (every other input; genomics only) and reused for its other patterns. Returns
    (layer, visible inputs) -> the fit, one per distinct problem.
    """
    names = list(model.config.ptm_dims)
    genomics = genomic_design(data.drivers.numpy(), data.grade.numpy())
    ptms = {name: data.layers[name].double().numpy() for name in names}
    fits: dict[tuple[str, tuple[str, ...]], LinearFit] = {}
    inputs: dict[tuple[str, ...], Inputs] = {}

    def fitted(layer: str, visible: tuple[str, ...], like: LinearFit | None = None) -> LinearFit:
        if (layer, visible) not in fits:
            if visible not in inputs:
                inputs[visible] = Inputs(design(genomics, ptms, list(visible)))
            y = data.layers[layer].double().numpy()
            fits[layer, visible] = ESTIMATORS[estimator](inputs[visible], y, seed, like)
        return fits[layer, visible]

    with threadpool_limits(1):
        for layer in model.output_dims:
            reference = fitted(layer, tuple(p for p in names if p != layer))
            fitted(layer, ())
            for k, pattern in enumerate(model.anchor.patterns.tolist()):
                visible = tuple(p for p, seen in zip(names, pattern) if seen and p != layer)
                _set_anchor(model, k, layer, fitted(layer, visible, reference), genomics.shape[1], visible)
    return fits


def _set_anchor(
    model: LatentPerturbationModel,
    pattern: int,
    layer: str,
    fit: LinearFit,
    n_genomic: int,
    visible: tuple[str, ...],
) -> None:
    """Place a fit on the compact design (genomics, visible PTM layers) into the anchor's full input rows."""
    used = np.concatenate([np.arange(n_genomic), *(np.asarray(model.anchor.input_rows[p]) for p in visible)])
    stored = model.anchor.weight_of(layer)
    weight = stored.new_zeros(stored.shape[1:])
    weight[torch.as_tensor(used)] = torch.as_tensor(fit.coef, dtype=stored.dtype)
    model.anchor.set_map(pattern, layer, weight, torch.as_tensor(fit.intercept, dtype=stored.dtype))


# ---------------------------------------------------------------------------------------------
# Read-outs chosen on the inner split

READ_OUT_EVERY = 10  # epochs between the inner-split read-out errors the history records (and the last)
WEIGHTS = (0.25, 0.5, 0.75, 1.0)
SEPARATION = 2.7  # standard errors by which a deep read-out must beat the anchor (see `choose_read_outs`)
READ_OUTS = [("anchor", 0.0)] + [("residual", w) for w in WEIGHTS] + [("blend", w) for w in WEIGHTS]


def read_out_prediction(paths: dict[str, torch.Tensor], mode: str, weight: float) -> torch.Tensor:
    """One layer's prediction under a read-out: the anchor, anchor + g residual or (1 - w) anchor + w
    direct."""
    if mode == "residual":
        return paths["anchor"] + weight * paths["residual"]
    if mode == "blend":
        return (1 - weight) * paths["anchor"] + weight * paths["direct"]
    return paths["anchor"]


@torch.no_grad()
def layer_paths(
    model: LatentPerturbationModel, data: CohortTensors
) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """Layer -> evaluation pattern -> path ("anchor", "residual", "direct") -> predictions of `data`."""
    model.eval()
    names = list(model.config.ptm_dims)
    ptms = {name: data.layers[name] for name in names}
    patterns = masking_patterns(names)
    outputs = {}
    for layer in model.output_dims:
        for pattern in evaluation_patterns(layer, names):
            if pattern not in outputs:
                mask = patterns[pattern].expand(len(data), -1)
                outputs[pattern] = model(data.drivers, data.grade, ptms, mask).paths
    return {
        layer: {
            pattern: {path: outputs[pattern][path][layer] for path in outputs[pattern]}
            for pattern in evaluation_patterns(layer, names)
        }
        for layer in model.output_dims
    }


def choose_read_outs(model: LatentPerturbationModel, data: CohortTensors) -> tuple[float, pd.DataFrame]:
    """The read-out of each layer and inputs (`INPUTS`: its evaluation pattern with every other input, and
    genomics only) on `data`, and the mean of the best deep read-outs' errors (relative to the error of
    predicting the training mean, 0 in model units), which the history records every `READ_OUT_EVERY`
    epochs.

    A patient's error is its squared error summed over the layer's features. The read-out with the least
    mean error replaces the anchor only when it beats the anchor by more than `SEPARATION` standard
    errors of the paired difference (a one-sided test at 2.5%, Bonferroni-corrected for the seven deep
    read-outs): on 15-30 inner patients, the best of them beats the anchor by two standard errors by
    chance alone often enough to cost held-out R^2 (measured on UCEC's genomics-only protein).
    """
    rows = []
    for layer, by_pattern in layer_paths(model, data).items():
        truth = data.layers[layer]
        scale = float(truth.pow(2).sum()) or 1.0
        for inputs, paths in zip(INPUTS, by_pattern.values()):
            # (read-outs, patients)
            errors = torch.stack(
                [(read_out_prediction(paths, mode, w) - truth).pow(2).sum(dim=1) for mode, w in READ_OUTS]
            ).double()
            best = int(errors.mean(dim=1).argmin())
            chosen = best if best > 0 and clear_gain((errors[0] - errors[best]).numpy(), SEPARATION) else 0
            rows.append(
                {
                    "layer": layer,
                    "inputs": inputs,
                    "read_out": READ_OUTS[chosen][0],
                    "weight": READ_OUTS[chosen][1],
                    "inner_error_anchor": float(errors[0].sum()) / scale,
                    "inner_error_chosen": float(errors[chosen].sum()) / scale,
                    "inner_error_deep": float(errors[1:].sum(dim=1).min()) / scale,
                }
            )
    table = pd.DataFrame(rows)
    return float(table["inner_error_deep"].mean()), table


def apply_read_outs(model: LatentPerturbationModel, table: pd.DataFrame) -> None:
    """Set the gates and blend weights of a table made by `choose_read_outs`."""
    gates = {(r.layer, r.inputs): r.weight if r.read_out == "residual" else 0.0 for r in table.itertuples()}
    blends = {(r.layer, r.inputs): r.weight if r.read_out == "blend" else 0.0 for r in table.itertuples()}
    model.set_read_out(gates, blends)


def fit(
    config: ModelConfig,
    train: CohortTensors,
    validation: CohortTensors,
    settings: TrainSettings = TrainSettings(),
    seed: int = 42,
    progress: Progress | None = None,
) -> FitResult:
    """Anchors on `train`, the network trained on `train`, read-outs chosen on `validation` after the
    last epoch; the anchors of the returned model are refitted on `train` and `validation` together."""
    make_deterministic(seed)
    device = resolve_device(settings.device)
    model = LatentPerturbationModel(config)
    fit_anchors(model, train, settings.anchor)
    model.to(device)
    train, validation = train.to(device), validation.to(device)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, foreach=True
    )  # one batched update of every parameter: faster on the CPU too
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
    generator = torch.Generator().manual_seed(seed)
    n_ptm = len(config.ptm_dims)
    validation_mask = evaluation_mask(len(validation), n_ptm, seed + 1).to(device)

    error, read_out = choose_read_outs(model, validation)
    rows = [
        {
            "epoch": 0,
            "train_loss": np.nan,
            "validation_loss": _validation_loss(model, validation, validation_mask),
            "read_out_error": error,
            "learning_rate": np.nan,
        }
    ]
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        totals = []
        for start in range(0, len(train), settings.batch_size):
            batch = train.subset(order[start : start + settings.batch_size])
            mask = sample_ptm_mask(len(batch), n_ptm, generator).to(device)
            losses = _batch_loss(model, batch, mask, config)
            optimiser.zero_grad()
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip, foreach=True)
            optimiser.step()
            totals.append(losses["total"].item() * len(batch))
        learning_rate = schedule.get_last_lr()[0]
        schedule.step()
        validation_loss = _validation_loss(model, validation, validation_mask)
        error = np.nan
        if epoch % READ_OUT_EVERY == 0 or epoch == settings.epochs:
            error, read_out = choose_read_outs(model, validation)
        row = {
            "epoch": epoch,
            "train_loss": sum(totals) / len(train),
            "validation_loss": validation_loss,
            "read_out_error": error,
            "learning_rate": learning_rate,
        }
        rows.append(row)
        if progress is not None:
            progress(row)
    model.to("cpu").eval()
    apply_read_outs(model, read_out)
    fit_anchors(model, CohortTensors.concat(train.to("cpu"), validation.to("cpu")), settings.anchor)
    return FitResult(model, pd.DataFrame(rows), read_out)
