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
2.6-42 against 0.01-0.1). The inner error and the inner validation loss are still recorded every
`READ_OUT_EVERY` epochs and at the last, in the history.

On the CPU a training step is a few hundred small operations, so their number decides its time: the
PTM encoders and the decoders of z_state run as banks (`lpmlib.model.ParameterBank`), every parameter
lives in one vector for clipping and AdamW (`FlatParameters`, `FlatAdamW`), an epoch's anchors and
masks are made at once, and the inner split is evaluated only when the history records it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
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


BASE_BATCH = 16  # the reference implementation's batch, and the automatic batch of small cohorts
STEPS_PER_EPOCH = 25  # optimiser steps per epoch that the automatic batch keeps beyond 400 patients
MAX_RATE_SCALE = 4.0  # the automatic batch's learning rate is at most this multiple of `learning_rate`


def batch_rule(n_train: int, batch_size: int, learning_rate: float) -> tuple[int, float]:
    """The batch and peak learning rate for `n_train` training patients.

    `batch_size` 0 is automatic: 16 up to 400 patients, then ceil(n_train / 25), so that an epoch stays at
    25 optimiser steps and a large cohort costs Python no more steps than a small one; the learning rate
    grows with the square root of the batch (relative to 16), which keeps the noise of a step about the
    same as the batch grows, up to `MAX_RATE_SCALE` times `learning_rate` (reached at a batch of 256; a
    precaution: square-root scaling is a heuristic, and larger rates were not tried). Any other
    `batch_size` is used as given, with `learning_rate` unchanged.
    """
    if batch_size:
        return batch_size, learning_rate
    batch = max(BASE_BATCH, math.ceil(n_train / STEPS_PER_EPOCH))
    return batch, scaled_rate(batch, learning_rate)


def scaled_rate(batch: int, learning_rate: float) -> float:
    """The automatic batch's learning rate at `batch`: `learning_rate` (the rate at a batch of 16) times
    sqrt(batch / 16), at most `MAX_RATE_SCALE` times."""
    return learning_rate * min(math.sqrt(batch / BASE_BATCH), MAX_RATE_SCALE)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; the defaults are those of the method's reference implementation.

    `batch_size` 0 (the default) is automatic (`batch_rule`): the method's 16 on cohorts up to 400
    training patients, larger beyond, with a learning rate that follows it; `learning_rate` is then the
    rate at a batch of 16. A positive `batch_size` is used as given, at `learning_rate`.
    """

    epochs: int = 100
    batch_size: int = 0  # 0: automatic (`batch_rule`), 16 up to 400 training patients
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    validation_fraction: float = 0.2  # of each training fold: the inner split that chooses the read-outs
    anchor: str = "reduced_rank_ridge"  # the anchors' estimator: "ridge" or "reduced_rank_ridge"
    device: str = "auto"  # "auto" takes CUDA when present, else the CPU

    CONSTRAINTS: ClassVar[Constraints] = {
        "epochs": Interval(int, 1),
        "batch_size": Interval(int, 0),  # 0: automatic
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

    def batch_and_rate(self, n_train: int) -> tuple[int, float]:
        """The batch and peak learning rate of a training on `n_train` patients (`batch_rule`)."""
        return batch_rule(n_train, self.batch_size, self.learning_rate)


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

    One thread per fit makes results independent of how many folds run side by side. The flag is set as
    `torch.use_deterministic_algorithms(True)` sets it, without that function's import of torch's compiler
    (2 s in every new process) to set the compiler's own flag, which only compiled code reads: training
    compiles nothing. Where the compiler is loaded already, the public function sets both.
    """
    seed_one_thread(seed)
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True)
    else:
        torch._C._set_deterministic_algorithms(True)


def _batch_loss(
    model, batch: CohortTensors, mask: torch.Tensor, anchor: dict[str, torch.Tensor] | None = None
) -> dict:
    ptms = {name: batch.layers[name] for name in model.config.ptm_dims}
    output = model(batch.drivers, batch.grade, ptms, mask, anchor)
    return lpm_loss(output, batch.layers, mask, model.config)


@torch.no_grad()
def _validation_loss(model: LatentPerturbationModel, validation: CohortTensors, mask: torch.Tensor) -> float:
    model.eval()
    return _batch_loss(model, validation, mask)["total"].item()


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
    evaluation problems (every other input; genomics only) and reused for its other patterns. The
    problems are solved one design (visible inputs) at a time, and a design's SVDs are dropped after its
    last problem: kept for the whole fit, they took 1.2 GB on 10,000 patients. Returns (layer, visible
    inputs) -> the fit, one per distinct problem.
    """
    names = list(model.config.ptm_dims)
    genomics = genomic_design(data.drivers.numpy(), data.grade.numpy())
    ptms = {name: data.layers[name].double().numpy() for name in names}
    visible_of = {
        (layer, k): tuple(p for p, seen in zip(names, pattern) if seen and p != layer)
        for layer in model.output_dims
        for k, pattern in enumerate(model.anchor.patterns.tolist())
    }
    evaluation = [(layer, visible) for layer in model.output_dims for visible in (_others(names, layer), ())]
    remaining = [
        (layer, visible) for (layer, _), visible in visible_of.items() if (layer, visible) not in evaluation
    ]

    def solve(problems: list[tuple[str, tuple[str, ...]]], like: Callable[[str], LinearFit | None]) -> dict:
        fits = {}
        for visible in dict.fromkeys(visible for _, visible in problems):
            inputs = Inputs(design(genomics, ptms, list(visible)))
            for layer in dict.fromkeys(layer for layer, seen in problems if seen == visible):
                y = data.layers[layer].double().numpy()
                fits[layer, visible] = ESTIMATORS[estimator](inputs, y, seed, like(layer))
        return fits

    with threadpool_limits(1):
        fits = solve(evaluation, lambda layer: None)
        fits |= solve(remaining, lambda layer: fits[layer, _others(names, layer)])
    for (layer, k), visible in visible_of.items():
        _set_anchor(model, k, layer, fits[layer, visible], genomics.shape[1], visible)
    return fits


def _others(ptm_names: list[str], layer: str) -> tuple[str, ...]:
    """Every PTM layer but `layer`: the inputs of its evaluation problem with other inputs."""
    return tuple(p for p in ptm_names if p != layer)


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
    names = list(model.config.ptm_dims)
    ptms = {name: data.layers[name] for name in names}
    patterns = masking_patterns(names)
    wanted = {p: patterns[p] for layer in model.output_dims for p in evaluation_patterns(layer, names)}
    outputs = {p: output.paths for p, output in model.under_masks(data.drivers, data.grade, ptms, wanted)}
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


class FlatParameters:
    """Every parameter of a model as a view into one vector, and every gradient as a view into another.

    Autograd accumulates each gradient into its view, so clipping is one norm and one product and AdamW
    one pass over the vector, where they were several operations per parameter tensor (176 in the
    default model) and a third of a training step on the CPU. The members of each of the model's
    `banks` lie next to each other, and the bank is lent that block (`ParameterBank.lent`): the forward
    pass uses it without stacking, and autograd accumulates its gradient at once.
    """

    def __init__(self, model: LatentPerturbationModel) -> None:
        self.model = model
        banked = {id(p) for bank in model.banks.values() for p in bank.members}
        singles = [p for p in model.parameters() if id(p) not in banked]
        blocks = [torch.stack(bank.members).detach() for bank in model.banks.values()]
        blocks += [p.detach() for p in singles]
        self.vector = torch.cat([block.reshape(-1) for block in blocks])
        self.grad = torch.zeros_like(self.vector)
        values, grads = self._views(blocks, self.vector), self._views(blocks, self.grad)
        for bank, value, grad in zip(model.banks.values(), values, grads):
            bank.lent = value.detach().requires_grad_()
            bank.lent.grad = grad
            for parameter, row, row_grad in zip(bank.members, value, grad):
                parameter.data, parameter.grad = row, row_grad
        for parameter, value, grad in zip(singles, values[len(model.banks) :], grads[len(model.banks) :]):
            parameter.data, parameter.grad = value, grad

    @staticmethod
    def _views(blocks: list[torch.Tensor], vector: torch.Tensor) -> list[torch.Tensor]:
        """Consecutive views of `vector` shaped as `blocks`."""
        return [
            part.view_as(block)
            for part, block in zip(vector.split([block.numel() for block in blocks]), blocks)
        ]

    def clip_grad_norm(self, max_norm: float) -> None:
        """`torch.nn.utils.clip_grad_norm_` on every gradient at once."""
        self.grad.mul_((max_norm / (self.grad.norm() + 1e-6)).clamp(max=1.0))

    def release(self) -> None:
        """Give every parameter its own storage again, without a gradient, and take the banks' blocks
        back (a model as constructed)."""
        for bank in self.model.banks.values():
            bank.lent = None
        for parameter in self.model.parameters():
            parameter.data = parameter.data.clone()
            parameter.grad = None


class FlatAdamW:
    """`torch.optim.AdamW(fused=True)` at its default betas and eps, on a `FlatParameters` vector.

    The same fused kernel, called directly: the first use of any `torch.optim` optimiser imports torch's
    compiler, 2 s in every new process (a loky or Dask worker) for a default fold of about 8 s.
    """

    BETAS, EPS = (0.9, 0.999), 1e-8

    def __init__(self, flat: FlatParameters, weight_decay: float) -> None:
        self.flat, self.weight_decay = flat, weight_decay
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(flat.vector), torch.zeros_like(flat.vector)
        self.steps = torch.zeros((), dtype=torch.float32, device=flat.vector.device)

    def descend(self, loss: torch.Tensor, learning_rate: float, max_norm: float) -> None:
        """One training step on `loss`: gradients, clipped to `max_norm`, then AdamW's update."""
        self.flat.grad.zero_()
        loss.backward()
        self.flat.clip_grad_norm(max_norm)
        self.step(learning_rate)

    @torch.no_grad()
    def step(self, learning_rate: float) -> None:
        self.steps += 1
        torch._fused_adamw_(
            [self.flat.vector],
            [self.flat.grad],
            [self.exp_avg],
            [self.exp_avg_sq],
            [],
            [self.steps],
            amsgrad=False,
            lr=learning_rate,
            beta1=self.BETAS[0],
            beta2=self.BETAS[1],
            weight_decay=self.weight_decay,
            eps=self.EPS,
            maximize=False,
        )


def cosine_rate(peak: float, epoch: int, epochs: int) -> float:
    """The learning rate of an epoch (from 1) under a cosine schedule from `peak` that would reach zero
    after the last epoch (`torch.optim.lr_scheduler.CosineAnnealingLR` with `T_max=epochs`, closed form)."""
    return peak * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2


@torch.no_grad()
def _anchor_paths(model: LatentPerturbationModel, data: CohortTensors, mask: torch.Tensor) -> dict:
    """The anchor path of every row under its mask: fixed while the network trains, so an epoch's are
    computed at once, one product per masking pattern instead of one per pattern and batch."""
    ptms = {name: data.layers[name] for name in model.config.ptm_dims}
    return model.anchor_paths(data.drivers, data.grade, ptms, mask)


def _train_epoch(
    model: LatentPerturbationModel,
    train: CohortTensors,
    batch_size: int,
    step: Callable[[torch.Tensor], None],
    generator: torch.Generator,
) -> float:
    """One pass over `train` in a random order, each patient under a training mask drawn for it; the
    mean loss per patient. The epoch's shuffled copy and anchors are made once, and each batch is views
    of them."""
    model.train()
    order = torch.randperm(len(train), generator=generator)
    mask = sample_ptm_mask(len(train), len(model.config.ptm_dims), generator).to(train.drivers.device)
    shuffled = train.subset(order.to(train.drivers.device))
    anchors = _anchor_paths(model, shuffled, mask)
    sums = []  # the batches' summed losses, read once at the end of the epoch
    for start in range(0, len(train), batch_size):
        stop = start + batch_size
        batch_anchor = {name: values[start:stop] for name, values in anchors.items()}
        loss = _batch_loss(model, shuffled.rows(start, stop), mask[start:stop], batch_anchor)["total"]
        step(loss)
        sums.append(loss.detach() * min(batch_size, len(train) - start))
    return float(torch.stack(sums).sum()) / len(train)


def _history_row(epoch: int, train_loss: float, learning_rate: float) -> dict:
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "validation_loss": np.nan,
        "read_out_error": np.nan,
        "learning_rate": learning_rate,
    }


def fit(
    config: ModelConfig,
    train: CohortTensors,
    validation: CohortTensors,
    settings: TrainSettings = TrainSettings(),
    seed: int = 42,
    progress: Progress | None = None,
) -> FitResult:
    """Anchors on `train`, the network trained on `train`, read-outs chosen on `validation` after the
    last epoch; the anchors of the returned model are refitted on `train` and `validation` together.

    The history has a row per epoch (0: untrained); the validation loss and the read-out error are
    recorded at epoch 0, every `READ_OUT_EVERY` epochs and at the last (NaN between).
    """
    make_deterministic(seed)
    device = resolve_device(settings.device)
    model = LatentPerturbationModel(config)
    fit_anchors(model, train, settings.anchor)
    model.to(device)
    train, validation = train.to(device), validation.to(device)
    batch_size, learning_rate = settings.batch_and_rate(len(train))
    flat = FlatParameters(model)
    optimiser = FlatAdamW(flat, settings.weight_decay)

    generator = torch.Generator().manual_seed(seed)
    validation_mask = evaluation_mask(len(validation), len(config.ptm_dims), seed + 1).to(device)
    rows = [_history_row(0, np.nan, np.nan)]
    rows[0]["validation_loss"] = _validation_loss(model, validation, validation_mask)
    rows[0]["read_out_error"], read_out = choose_read_outs(model, validation)
    for epoch in range(1, settings.epochs + 1):
        rate = cosine_rate(learning_rate, epoch, settings.epochs)
        step = functools.partial(optimiser.descend, learning_rate=rate, max_norm=settings.grad_clip)
        row = _history_row(epoch, _train_epoch(model, train, batch_size, step, generator), rate)
        if epoch % READ_OUT_EVERY == 0 or epoch == settings.epochs:
            row["validation_loss"] = _validation_loss(model, validation, validation_mask)
            row["read_out_error"], read_out = choose_read_outs(model, validation)
        rows.append(row)
        if progress is not None:
            progress(row)
    flat.release()
    model.to("cpu").eval()
    apply_read_outs(model, read_out)
    fit_anchors(model, CohortTensors.concat(train.to("cpu"), validation.to("cpu")), settings.anchor)
    return FitResult(model, pd.DataFrame(rows), read_out)
