"""The Latent Perturbation Model (LPM): genomics, grade and PTM layers -> latent tumour state -> omic layers.

Drivers and grade give a genomic embedding through self-attention with one token per driver; each PTM
layer is encoded by its own VAE, and all PTM layers together by a multi-omic VAE. A fusion MLP turns
these into `z_state`, from which every target layer (conditioned on its biological parents) and every
PTM layer is decoded. A masked PTM layer never influences any output, so with all PTM layers masked the
model is its genomics-only path.

Every output layer nests its linear baseline: a closed-form linear *anchor* (fitted outside the
network, see `lpmlib.train.fit_anchors`, one per masking pattern) plus two deep read-outs of z_state:
a *residual* decoder that starts at zero and learns what the anchor misses, and a *direct* decoder
trained without the anchor (the deep model alone). The prediction of layer l is

    (1 - w_l) * anchor_l + w_l * direct_l + g_l * residual_l

with the gate g_l and blend weight w_l chosen on an inner split (both 0: the anchor alone) for each
layer and each of its two kinds of inputs (`INPUTS`): with some other PTM layer visible, and from
genomics alone, on which the counterfactual answers rest and where depth has the least to add.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpmlib.constraints import Constraints, Interval, check_fields

INPUTS = ("all", "genomics_only")  # a layer predicted with other PTM layers visible, or from genomics alone
PATHS = ("anchor", "residual", "direct")  # the read-outs of every layer (`LPMOutput.paths`)


@dataclass(frozen=True)
class ModelConfig:
    """Layer sizes, architecture and loss weights of an LPM; validated on construction."""

    n_drivers: int
    n_grades: int  # grade categories, 0 = unknown
    ptm_dims: dict[str, int]  # PTM layer -> features (model inputs and outputs)
    target_dims: dict[str, int]  # target layer -> features (outputs only)
    target_parents: dict[str, list[str]] = field(default_factory=dict)  # target -> its earlier parent targets
    latent_dim: int = 128
    vae_latent_dim: int = 64
    n_heads: int = 4
    dropout: float = 0.1
    recon_weights: dict[str, float] = field(default_factory=dict)  # layer -> weight, default 1.0
    beta_kl: float = 0.01
    contrastive_weight: float = 0.1
    temperature: float = 0.07

    CONSTRAINTS: ClassVar[Constraints] = {
        **{
            name: Interval(int, 1)
            for name in ("n_drivers", "n_grades", "latent_dim", "vae_latent_dim", "n_heads")
        },
        "dropout": Interval(float, 0, 1, closed="left"),
        "beta_kl": Interval(float, 0),
        "contrastive_weight": Interval(float, 0),
        "temperature": Interval(float, 0, closed="right"),
    }
    HYPERPARAMETERS: ClassVar[tuple[str, ...]] = (
        "latent_dim",
        "vae_latent_dim",
        "n_heads",
        "dropout",
        "beta_kl",
        "contrastive_weight",
        "temperature",
    )  # the fields a run sets; the others follow from the cohort

    def __post_init__(self) -> None:
        for name in ("ptm_dims", "target_dims", "recon_weights"):
            object.__setattr__(self, name, dict(getattr(self, name)))
        object.__setattr__(self, "target_parents", {k: list(v) for k, v in self.target_parents.items()})
        self._validate()

    def _validate(self) -> None:
        check_fields(self, self.CONSTRAINTS)
        if self.latent_dim % self.n_heads:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be divisible by n_heads ({self.n_heads})")
        if not self.ptm_dims:
            raise ValueError("ptm_dims must name at least one PTM layer")
        if set(self.ptm_dims) & set(self.target_dims):
            both = sorted(set(self.ptm_dims) & set(self.target_dims))
            raise ValueError(f"layers both PTM and target: {both}")
        for layer, dim in {**self.ptm_dims, **self.target_dims}.items():
            if not layer or "." in layer:
                raise ValueError(f"layer name {layer!r} must be non-empty and contain no '.'")
            if dim < 1:
                raise ValueError(f"layer '{layer}' must have >= 1 feature, got {dim}")
        order = list(self.target_dims)
        for child, parents in self.target_parents.items():
            if child not in self.target_dims:
                raise ValueError(f"target_parents names '{child}', which is not a target layer")
            for parent in parents:
                if parent not in order[: order.index(child)]:
                    raise ValueError(
                        f"parent '{parent}' of target '{child}' must be a target earlier in target_dims"
                    )
        unknown = set(self.recon_weights) - set(self.ptm_dims) - set(self.target_dims)
        if unknown:
            raise ValueError(f"recon_weights names unknown layers: {sorted(unknown)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy of the configuration."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """The configuration written by `to_dict`; an unknown key is an error naming it."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**values)


@dataclass
class LPMOutput:
    """Everything one forward pass produces; tensors have the batch as first dimension."""

    predictions: dict[str, Tensor]  # every target and PTM layer, (B, dim)
    z_state: Tensor  # (B, latent_dim)
    z_seed: Tensor  # (B, latent_dim), from genomics and grade only
    ptm_mu: dict[str, Tensor]  # per-PTM VAE posterior means, (B, vae_latent_dim)
    ptm_logvar: dict[str, Tensor]
    joint_mu: Tensor  # multi-omic VAE over all PTM layers, (B, vae_latent_dim)
    joint_logvar: Tensor
    attention: Tensor  # (B, n_drivers + 1, n_drivers + 1), averaged over heads
    paths: dict[str, dict[str, Tensor]] = field(
        default_factory=dict
    )  # "anchor", "residual", "direct" -> layer


NORM_EPS = 1e-5  # every LayerNorm's (torch's default)


def _mlp(n_in: int, n_hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    """One hidden layer with LayerNorm (not BatchNorm: masked zeros would pollute batch statistics)."""
    return nn.Sequential(
        nn.Linear(n_in, n_hidden),
        nn.LayerNorm(n_hidden, eps=NORM_EPS),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(n_hidden, n_out),
    )


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """`F.dropout` (each entry zeroed with probability p, the others scaled by 1 / (1 - p)), its mask drawn
    by `torch.rand_like`: the CPU kernel of `F.dropout`'s `bernoulli_` is slow (pytorch/pytorch#138199),
    and took 15% of an epoch at 10,240 patients; with this mask the epoch takes 10% less."""
    if not training or p == 0:
        return x
    return x * ((torch.rand_like(x) >= p) * (1 / (1 - p)))


def _run_mlp(mlp: nn.Sequential, x: Tensor, training: bool) -> Tensor:
    """An `_mlp` applied functionally: the same computation without the calls of its five modules."""
    first, norm, _, mlp_dropout, last = mlp
    hidden = F.linear(x, first.weight, first.bias)
    hidden = F.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return F.linear(dropout(F.gelu(hidden), mlp_dropout.p, training), last.weight, last.bias)


class ParameterBank:
    """One parameter (`name`) of several modules of one shape, used stacked, (G, *shape), by one batched
    operation.

    Stacked at each use; or, while a trainer lends the bank a tensor (`lent`: a block of its flat
    parameter vector whose rows are the members' storage, see `lpmlib.train.FlatParameters`), that
    tensor, so that training stacks nothing and accumulates one gradient per bank instead of one per
    member.
    """

    def __init__(self, modules: list[nn.Module], name: str) -> None:
        self.modules, self.name = modules, name
        self.lent: Tensor | None = None

    @property
    def members(self) -> list[nn.Parameter]:
        return [getattr(module, self.name) for module in self.modules]

    def stacked(self) -> Tensor:
        return self.lent if self.lent is not None else torch.stack(self.members)


def _linear_banks(prefix: str, linears: list[nn.Linear]) -> dict[str, ParameterBank]:
    """The weight and bias banks of linears of one shape, named `<prefix>.weight` and `<prefix>.bias`."""
    return {f"{prefix}.{name}": ParameterBank(linears, name) for name in ("weight", "bias")}


def _same_shapes(modules: list[nn.Module]) -> bool:
    return len({tuple(p.shape for p in module.parameters()) for module in modules}) == 1


def _mlp_banks(prefix: str, mlps: list[nn.Sequential]) -> dict[str, ParameterBank]:
    """Banks of several `_mlp`s' layers (`<prefix>.0`, `.1` the norm, `.4`), of the layers whose shapes
    agree across them (the first and last layers' widths may differ)."""
    banks = {}
    for index in (0, 1, 4):
        layers = [mlp[index] for mlp in mlps]
        if _same_shapes(layers):
            banks |= _linear_banks(f"{prefix}.{index}", layers)
    return banks


def _bank_linear(banks: dict[str, ParameterBank], prefix: str, x: Tensor) -> Tensor:
    """A bank of linears, each on its own group: x (G, B, n_in) -> (G, B, n_out), one product."""
    weight, bias = banks[f"{prefix}.weight"].stacked(), banks[f"{prefix}.bias"].stacked()
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _norm_activation(
    banks: dict[str, ParameterBank],
    prefix: str,
    hidden: Tensor,
    group_dim: int,
    rate: float,
    training: bool,
) -> Tensor:
    """An `_mlp`'s LayerNorm (each member's own affine), GELU and dropout on a bank's hidden states, a 3-d
    tensor whose groups lie along `group_dim` (0 or 1)."""
    weight, bias = banks[f"{prefix}.weight"].stacked(), banks[f"{prefix}.bias"].stacked()
    if group_dim == 0:
        weight, bias = weight.unsqueeze(1), bias.unsqueeze(1)
    hidden = torch.addcmul(bias, F.layer_norm(hidden, hidden.shape[-1:], eps=NORM_EPS), weight)
    return dropout(F.gelu(hidden), rate, training)


class GaussianEncoder(nn.Module):
    """Diagonal Gaussian posterior q(z | x): an MLP to mean and log-variance."""

    def __init__(self, n_in: int, n_hidden: int, n_latent: int, dropout: float) -> None:
        super().__init__()
        self.body = _mlp(n_in, n_hidden, n_hidden, dropout)
        self.mu = nn.Linear(n_hidden, n_latent)
        self.logvar = nn.Linear(n_hidden, n_latent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.gelu(_run_mlp(self.body, x, self.training))
        return F.linear(h, self.mu.weight, self.mu.bias), F.linear(h, self.logvar.weight, self.logvar.bias)


class GenomicsEncoder(nn.Module):
    """Self-attention over one token per driver (embedding x presence) plus a grade context token."""

    def __init__(self, n_drivers: int, n_grades: int, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        # Grade and driver tokens start on one scale (norm ~1): at nn.Embedding's N(0, 1) the grade
        # token is sqrt(dim) times larger, dominates attention and the token mean, and leaves the
        # drivers' effects (what the questions perturb) a fraction of what the data carry.
        self.driver_embedding = nn.Parameter(torch.randn(n_drivers, dim) * dim**-0.5)
        self.grade_embedding = nn.Embedding(n_grades, dim)
        nn.init.normal_(self.grade_embedding.weight, std=dim**-0.5)
        self.attention = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, drivers: Tensor, grade: Tensor) -> tuple[Tensor, Tensor]:
        """Genomic embedding (B, dim) and head-averaged attention weights (B, n_tokens, n_tokens).

        `nn.MultiheadAttention` over a patient's tokens (its parameters, its dropout of the attention
        weights), computed from the embedding tables. Every token a patient can have is a row of the table
        (each driver's, each grade's) times a scale (the driver's presence; 1 for its grade), so its query,
        key and value are the row's projections times the scale plus the biases. The scores and the
        projected values then come from products of the small table with the patients' scales, never from
        per-patient tokens, queries, keys and values (at 410 patients, the encoder's forward and backward
        passes take 29 ms instead of 47). The keys are every row, the grades a patient does not have
        weighted 0.
        """
        attention, dim = self.attention, self.driver_embedding.shape[1]
        heads, n_drivers, batch = attention.num_heads, drivers.shape[1], len(drivers)
        head_dim = dim // heads
        table = torch.cat([self.driver_embedding, self.grade_embedding.weight])  # (rows, dim)
        n_rows, n_grades = len(table), len(table) - n_drivers
        q, k, v = (  # (heads, rows, head_dim), and the biases (heads, 1, head_dim)
            x.view(n_rows, heads, head_dim).transpose(0, 1)
            for x in (table @ attention.in_proj_weight.T).split(dim, dim=1)
        )
        bq, bk, bv = (b.view(heads, 1, head_dim) for b in attention.in_proj_bias.split(dim))
        q, bq = q * head_dim**-0.5, bq * head_dim**-0.5  # the scores' scaling
        scale = torch.cat([drivers, drivers.new_ones(batch, n_grades)], dim=1)  # (B, rows)
        is_key = torch.cat(
            [torch.ones_like(drivers, dtype=torch.bool), F.one_hot(grade, n_grades).bool()], dim=1
        )
        driver_rows = torch.arange(n_drivers, device=drivers.device).expand(batch, -1)
        token_rows = torch.cat([driver_rows, n_drivers + grade.unsqueeze(1)], dim=1)  # (B, n_tokens)
        token_scale = torch.cat([drivers, drivers.new_ones(batch, 1)], dim=1)  # (B, n_tokens)

        # (s_i q_i + bq).(s_j k_j + bk) = s_i s_j q_i.k_j + s_j bq.k_j + terms without j, which the
        # softmax over the keys j cancels
        by_pair = (q @ k.transpose(1, 2))[:, token_rows].transpose(0, 1)  # (B, heads, n_tokens, rows)
        by_key = torch.where(is_key.unsqueeze(1), scale.unsqueeze(1) * (k * bq).sum(-1), float("-inf"))
        scores = token_scale[:, None, :, None] * by_pair * scale[:, None, None, :] + by_key.unsqueeze(2)
        weights = torch.softmax(scores, dim=-1)  # (B, heads, n_tokens, rows)
        weights = dropout(weights, attention.dropout, self.training)

        # out_proj(sum_j w_ij (s_j v_j + bv)) = sum over heads and j of w_ij s_j out_proj_h(v_j), plus
        # (sum_j w_ij) out_proj_h(bv), plus out_proj's bias: one product with the projected value rows
        out_weight = attention.out_proj.weight.view(dim, heads, head_dim).permute(1, 2, 0)
        values = (torch.cat([v, bv], dim=1) @ out_weight).reshape(-1, dim)  # (heads x (rows + 1), dim)
        mixed = torch.cat([weights * scale[:, None, None, :], weights.sum(-1, keepdim=True)], dim=-1)
        n_tokens = n_drivers + 1
        attended = torch.addmm(
            attention.out_proj.bias, mixed.transpose(1, 2).reshape(batch * n_tokens, len(values)), values
        )
        tokens = torch.cat(
            [drivers.unsqueeze(-1) * self.driver_embedding, table[n_drivers + grade].unsqueeze(1)], dim=1
        )
        embedded = F.layer_norm(
            tokens + attended.view(batch, n_tokens, dim),
            (dim,),
            self.norm.weight,
            self.norm.bias,
            self.norm.eps,
        )
        token_weights = weights.mean(dim=1).gather(2, token_rows.unsqueeze(1).expand(-1, n_tokens, -1))
        return embedded.mean(dim=1), token_weights


def _zero_last_layer(decoder: nn.Sequential) -> nn.Sequential:
    """A decoder whose output starts at exactly zero, so the model starts as its anchor."""
    nn.init.zeros_(decoder[-1].weight)
    nn.init.zeros_(decoder[-1].bias)
    return decoder


class LinearAnchor(nn.Module):
    """Closed-form linear predictions of every output layer, one map per masking pattern.

    The input is the genomic design (drivers, one-hot grade) followed by every PTM layer, zero where
    masked. A pattern's map has zero rows for the PTM layers the pattern masks and for the layer it
    predicts (`set_map` enforces it), so neither can reach the anchor. Maps start at zero and are set
    from fits made outside the network (`lpmlib.train.fit_anchors`): buffers, never trained by gradients.
    """

    def __init__(
        self, n_genomic: int, ptm_dims: dict[str, int], output_dims: dict[str, int], patterns: Tensor
    ) -> None:
        super().__init__()
        n_inputs = n_genomic + sum(ptm_dims.values())
        self.register_buffer("patterns", patterns.clone())  # (K, n_ptm) bool, True = observed
        self.register_buffer("weight", torch.zeros(len(patterns), n_inputs, sum(output_dims.values())))
        self.register_buffer("bias", torch.zeros(len(patterns), sum(output_dims.values())))
        self.output_columns = _ranges(output_dims, start=0)
        self.input_rows = _ranges(ptm_dims, start=n_genomic)

    def pattern_index(self, ptm_mask: Tensor) -> Tensor:
        """The stored pattern of every row (B,); a row with no stored pattern is an error."""
        match = (ptm_mask.unsqueeze(1) == self.patterns.unsqueeze(0)).all(dim=-1)  # (B, K)
        if not bool(match.any(dim=1).all()):
            unknown = ptm_mask[~match.any(dim=1)][0].int().tolist()
            raise ValueError(
                f"masking pattern {unknown} has no fitted anchor; patterns: {self.patterns.int().tolist()}"
            )
        return match.float().argmax(dim=1)

    def weight_of(self, name: str) -> Tensor:
        """The maps of one output layer, (K, n_inputs, dim)."""
        columns = self.output_columns[name]
        return self.weight[:, :, columns.start : columns.stop]

    def set_map(self, pattern: int, name: str, weight: Tensor, bias: Tensor) -> None:
        """Set one layer's map under one pattern; rows of masked PTM layers and of the layer itself are
        zeroed."""
        weight = weight.clone()
        for i, (ptm, rows) in enumerate(self.input_rows.items()):
            if ptm == name or not bool(self.patterns[pattern, i]):
                weight[rows.start : rows.stop] = 0.0
        columns = self.output_columns[name]
        self.weight[pattern, :, columns.start : columns.stop] = weight
        self.bias[pattern, columns.start : columns.stop] = bias

    def forward(self, inputs: Tensor, ptm_mask: Tensor) -> dict[str, Tensor]:
        index = self.pattern_index(ptm_mask)
        out = inputs.new_zeros(len(inputs), self.weight.shape[2])
        for k in index.unique().tolist():
            rows = torch.nonzero(index == k).squeeze(1)
            out.index_copy_(0, rows, inputs[rows] @ self.weight[k] + self.bias[k])
        return {name: out[:, c.start : c.stop] for name, c in self.output_columns.items()}


def _ranges(dims: dict[str, int], start: int) -> dict[str, range]:
    """Consecutive index ranges of named blocks of the given sizes, from `start`."""
    ranges, position = {}, start
    for name, dim in dims.items():
        ranges[name] = range(position, position + dim)
        position += dim
    return ranges


class LatentPerturbationModel(nn.Module):
    """Drivers + grade + masked PTM layers -> z_state -> every target layer and every PTM layer."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, v, p = config.latent_dim, config.vae_latent_dim, config.dropout
        n_ptm, ptm_total = len(config.ptm_dims), sum(config.ptm_dims.values())
        self.genomics = GenomicsEncoder(config.n_drivers, config.n_grades, d, config.n_heads, p)
        self.seed_head = _mlp(d, d, d, p)
        self.ptm_encoders = nn.ModuleDict(
            {name: GaussianEncoder(dim, d, v, p) for name, dim in config.ptm_dims.items()}
        )
        self.joint_encoder = GaussianEncoder(ptm_total + n_ptm, d, v, p)
        self.fusion = _mlp(d + n_ptm * v + n_ptm + v, d, d, p)
        self.anchor = LinearAnchor(
            config.n_drivers + config.n_grades, config.ptm_dims, self.output_dims, training_patterns(n_ptm)[0]
        )
        self.target_decoders = nn.ModuleDict(
            {
                name: _zero_last_layer(_mlp(d + self._parent_width(name), d, dim, p))
                for name, dim in config.target_dims.items()
            }
        )
        self.ptm_decoders = nn.ModuleDict(
            {name: _zero_last_layer(_mlp(d, d, dim, p)) for name, dim in config.ptm_dims.items()}
        )
        self.direct_target_decoders = nn.ModuleDict(
            {name: _mlp(d + self._parent_width(name), d, dim, p) for name, dim in config.target_dims.items()}
        )
        self.direct_ptm_decoders = nn.ModuleDict(
            {name: _mlp(d, d, dim, p) for name, dim in config.ptm_dims.items()}
        )
        self.register_buffer("residual_gate", torch.zeros(len(INPUTS), len(self.output_dims)))
        self.register_buffer("blend_weight", torch.zeros(len(INPUTS), len(self.output_dims)))
        # constants of the read-out, moved and cast with the model but never saved
        names, outputs = list(config.ptm_dims), list(self.output_dims)
        others = torch.tensor([[float(p != layer) for layer in outputs] for p in names])
        self.register_buffer("other_ptms", others, persistent=False)  # (n_ptm, n_outputs): p is not l
        columns = torch.repeat_interleave(
            torch.arange(len(outputs)), torch.tensor(list(self.output_dims.values()))
        )
        self.register_buffer("column_layer", columns, persistent=False)  # the output layer of each column
        self.z_decoders = self._decoders_of_z_state()
        self.banks = self._parameter_banks()

    @property
    def output_dims(self) -> dict[str, int]:
        """Every output layer, targets (parents first) then PTM layers."""
        return {**self.config.target_dims, **self.config.ptm_dims}

    def _parent_width(self, name: str) -> int:
        return sum(self.config.target_dims[q] for q in self.config.target_parents.get(name, []))

    def set_read_out(self, gates: dict[tuple[str, str], float], blends: dict[tuple[str, str], float]) -> None:
        """The residual gate g and blend weight w of (layer, inputs) pairs (`INPUTS`); others keep theirs."""
        layers = list(self.output_dims)
        for (name, inputs), gate in gates.items():
            self.residual_gate[INPUTS.index(inputs), layers.index(name)] = gate
        for (name, inputs), blend in blends.items():
            self.blend_weight[INPUTS.index(inputs), layers.index(name)] = blend

    def read_out(self) -> dict[tuple[str, str], tuple[float, float]]:
        """(layer, inputs) -> (gate g, blend weight w): prediction (1 - w) anchor + w direct + g residual."""
        return {
            (name, inputs): (float(self.residual_gate[k, i]), float(self.blend_weight[k, i]))
            for k, inputs in enumerate(INPUTS)
            for i, name in enumerate(self.output_dims)
        }

    def _decoders_of_z_state(self) -> list[tuple[str, str, nn.Sequential]]:
        """(path, layer, decoder) of every decoder whose input is z_state alone: the residual and the direct
        read-outs of every layer but a child target (`ModelConfig.target_parents`)."""
        parents = self.config.target_parents
        alone = [name for name in self.config.target_dims if not parents.get(name)]
        return [
            *(("residual", name, self.target_decoders[name]) for name in alone),
            *(("residual", name, self.ptm_decoders[name]) for name in self.config.ptm_dims),
            *(("direct", name, self.direct_target_decoders[name]) for name in alone),
            *(("direct", name, self.direct_ptm_decoders[name]) for name in self.config.ptm_dims),
        ]

    def _parameter_banks(self) -> dict[str, ParameterBank]:
        """The parameters that `forward` uses stacked: those of the PTM encoders (`ptm_encoders.*`) and of
        the decoders of z_state alone (`decoders.*`), wherever their shapes agree."""
        encoders = list(self.ptm_encoders.values())
        banks = _mlp_banks("ptm_encoders.body", [encoder.body for encoder in encoders])
        for head in ("mu", "logvar"):
            banks |= _linear_banks(f"ptm_encoders.{head}", [getattr(encoder, head) for encoder in encoders])
        return banks | _mlp_banks("decoders", [decoder for *_, decoder in self.z_decoders])

    def _genomics_only(self, ptm_mask: Tensor) -> Tensor:
        """(B, n_outputs) long: 1 where a row shows a layer no PTM layer other than itself, else 0."""
        return (ptm_mask.to(self.other_ptms.dtype) @ self.other_ptms == 0).long()

    def _sample(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """Reparameterised draw in training; the mean in evaluation, so comparisons have no sampling noise."""
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def _check_inputs(self, drivers: Tensor, ptms: dict[str, Tensor], ptm_mask: Tensor) -> None:
        names = list(self.config.ptm_dims)
        if set(ptms) != set(names):
            raise ValueError(f"ptms must hold exactly the PTM layers {names}, got {sorted(ptms)}")
        if ptm_mask.dtype != torch.bool or tuple(ptm_mask.shape) != (drivers.shape[0], len(names)):
            raise ValueError(f"ptm_mask must be bool of shape ({drivers.shape[0]}, {len(names)})")

    def forward(
        self,
        drivers: Tensor,
        grade: Tensor,
        ptms: dict[str, Tensor],
        ptm_mask: Tensor,
        anchor: dict[str, Tensor] | None = None,
        genomic: tuple[Tensor, Tensor] | None = None,
    ) -> LPMOutput:
        """One pass; `ptm_mask[:, i]` is True where PTM layer i is observed, False where it is masked.

        `anchor`: the anchor paths of these rows under this mask (`anchor_paths`), when already computed
        (training computes a whole epoch's at once: the anchors are fixed while the network trains).
        `genomic`: `self.genomics(drivers, grade)` of these rows, when already computed (in evaluation it
        does not depend on the mask: see `under_masks`).
        """
        visible = self._visible(drivers, ptms, ptm_mask)
        names = list(self.config.ptm_dims)
        mask_float = ptm_mask.to(drivers.dtype)

        g, attention = self.genomics(drivers, grade) if genomic is None else genomic
        z_seed = _run_mlp(self.seed_head, g, self.training)
        ptm_mu, ptm_logvar = self._encode_ptms(visible)
        ptm_z = torch.where(ptm_mask.T.unsqueeze(-1), self._sample(ptm_mu, ptm_logvar), 0.0)  # (n_ptm, B, v)
        joint_mu, joint_logvar = self.joint_encoder(torch.cat([*visible, mask_float], dim=1))
        z_joint = self._sample(joint_mu, joint_logvar)
        fused = torch.cat([g, ptm_z.transpose(0, 1).flatten(1), mask_float, z_joint], dim=1)
        z_state = _run_mlp(self.fusion, fused, self.training)

        if anchor is None:
            anchor = self._anchor_of_visible(drivers, grade, visible, ptm_mask)
        residual, direct = self._decode(z_state, anchor)
        paths = {"anchor": anchor, "residual": residual, "direct": direct}
        return LPMOutput(
            self._read_out(paths, ptm_mask),
            z_state,
            z_seed,
            dict(zip(names, ptm_mu.unbind(0))),
            dict(zip(names, ptm_logvar.unbind(0))),
            joint_mu,
            joint_logvar,
            attention,
            paths,
        )

    @torch.no_grad()
    def under_masks(
        self, drivers: Tensor, grade: Tensor, ptms: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> Iterator[tuple[str, LPMOutput]]:
        """Evaluation passes over the same rows, one per named mask (a pattern (n_ptm,) or a mask per
        row), in order. The genomic embedding, the same under every mask, is computed once, not once per
        mask."""
        self.eval()
        genomic = self.genomics(drivers, grade)
        for name, mask in masks.items():
            yield name, self(drivers, grade, ptms, mask.expand(len(drivers), -1), genomic=genomic)

    def anchor_paths(
        self, drivers: Tensor, grade: Tensor, ptms: dict[str, Tensor], ptm_mask: Tensor
    ) -> dict[str, Tensor]:
        """Every layer's anchor prediction (the "anchor" path of `forward`) of these rows and masks."""
        return self._anchor_of_visible(drivers, grade, self._visible(drivers, ptms, ptm_mask), ptm_mask)

    def _visible(self, drivers: Tensor, ptms: dict[str, Tensor], ptm_mask: Tensor) -> list[Tensor]:
        """The checked inputs' PTM layers in model order, zero where masked."""
        self._check_inputs(drivers, ptms, ptm_mask)
        return [torch.where(ptm_mask[:, i : i + 1], ptms[n], 0.0) for i, n in enumerate(self.config.ptm_dims)]

    def _anchor_of_visible(
        self, drivers: Tensor, grade: Tensor, visible: list[Tensor], ptm_mask: Tensor
    ) -> dict[str, Tensor]:
        grade_one_hot = F.one_hot(grade, self.config.n_grades).to(drivers.dtype)
        return self.anchor(torch.cat([drivers, grade_one_hot, *visible], dim=1), ptm_mask)

    def _read_out(self, paths: dict[str, dict[str, Tensor]], ptm_mask: Tensor) -> dict[str, Tensor]:
        """Each layer's prediction (1 - w) anchor + w direct + g residual, with the gate g and blend w of
        the row's kind of inputs (`INPUTS`), all layers in one pass over their columns."""
        kind = self._genomics_only(ptm_mask)
        layers = torch.arange(len(self.output_dims), device=ptm_mask.device)
        gate = self.residual_gate[kind, layers][:, self.column_layer]  # (B, n_columns)
        blend = self.blend_weight[kind, layers][:, self.column_layer]
        anchor, residual, direct = (torch.cat(list(paths[p].values()), dim=1) for p in PATHS)
        predicted = (1 - blend) * anchor + blend * direct + gate * residual
        return dict(zip(self.output_dims, predicted.split(list(self.output_dims.values()), dim=1)))

    def _encode_ptms(self, visible: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Every PTM encoder at once, on its layer's visible values: means and log-variances
        (n_ptm, B, vae_latent_dim), a few batched products over the `ptm_encoders` banks."""
        banks = self.banks
        if "ptm_encoders.body.0.weight" in banks:
            hidden = _bank_linear(banks, "ptm_encoders.body.0", torch.stack(visible))
        else:  # inputs of different widths
            firsts = [encoder.body[0] for encoder in self.ptm_encoders.values()]
            hidden = torch.stack([F.linear(x, first.weight, first.bias) for first, x in zip(firsts, visible)])
        hidden = _norm_activation(banks, "ptm_encoders.body.1", hidden, 0, self.config.dropout, self.training)
        hidden = F.gelu(_bank_linear(banks, "ptm_encoders.body.4", hidden))
        mu = _bank_linear(banks, "ptm_encoders.mu", hidden)
        return mu, _bank_linear(banks, "ptm_encoders.logvar", hidden)

    def _decode(
        self, z_state: Tensor, anchor: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Residual and direct read-outs of every layer. A child target (protein) is conditioned on its
        parents' anchors in the residual read-out (the gates cannot shift its input) and on their direct
        predictions in the direct read-out (the deep model alone). The decoders of z_state alone run at
        once (`_decode_z_state`), then each child target's, in target order."""
        out: dict[str, dict[str, Tensor]] = {"residual": {}, "direct": {}}
        for (path, name, _), decoded in zip(self.z_decoders, self._decode_z_state(z_state)):
            out[path][name] = decoded
        for name in self.config.target_dims:
            if parents := self.config.target_parents.get(name):
                residual_input = torch.cat([z_state, *(anchor[q] for q in parents)], dim=1)
                direct_input = torch.cat([z_state, *(out["direct"][q] for q in parents)], dim=1)
                out["residual"][name] = _run_mlp(self.target_decoders[name], residual_input, self.training)
                out["direct"][name] = _run_mlp(self.direct_target_decoders[name], direct_input, self.training)
        return tuple({name: out[path][name] for name in self.output_dims} for path in ("residual", "direct"))

    def _decode_z_state(self, z_state: Tensor) -> list[Tensor]:
        """The decoders of z_state alone (`z_decoders`), each output (B, layer width): one product with all
        their first layers, their norms at once, then their last layers (one product when their widths
        agree)."""
        banks = self.banks
        weight, bias = banks["decoders.0.weight"].stacked(), banks["decoders.0.bias"].stacked()
        groups, width = weight.shape[:2]
        hidden = torch.addmm(bias.view(-1), z_state, weight.view(groups * width, -1).T)
        hidden = hidden.view(len(z_state), groups, width)
        hidden = _norm_activation(banks, "decoders.1", hidden, 1, self.config.dropout, self.training)
        hidden = hidden.transpose(0, 1)  # (G, B, width)
        if "decoders.4.weight" in banks:
            return list(_bank_linear(banks, "decoders.4", hidden).unbind(0))
        lasts = [decoder[4] for *_, decoder in self.z_decoders]
        return [F.linear(h, last.weight, last.bias) for last, h in zip(lasts, hidden)]


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Per-sample KL(N(mu, exp(logvar)) || N(0, I)), averaged over latent dimensions: (B,).

    Averaged, not summed, to be on the scale of the reconstruction (a mean over features): summed over
    64 dimensions against a per-feature reconstruction, the KL drove the PTM codes to pure noise.
    """
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between L2-normalised rows of `a` and `b`; row i of each is the positive pair."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def _mean_squares(errors: Tensor, dims: list[int]) -> Tensor:
    """The mean square of each block of `dims` consecutive columns of `errors` (B, sum(dims)): (n_blocks,)."""
    if len(set(dims)) == 1:
        return errors.pow(2).view(len(errors), len(dims), dims[0]).mean(dim=(0, 2))
    block = torch.arange(len(dims), device=errors.device).repeat_interleave(errors.new_tensor(dims).long())
    sums = errors.new_zeros(len(dims)).index_add(0, block, errors.pow(2).sum(dim=0))
    return sums / (len(errors) * errors.new_tensor(dims))


def lpm_loss(
    output: LPMOutput, targets: dict[str, Tensor], ptm_mask: Tensor, config: ModelConfig
) -> dict[str, Tensor]:
    """Scalar loss terms: `total` = `reconstruction` + `kl` + `contrastive` (the last two weighted).

    Reconstruction covers every layer, masked PTM layers included, so the model learns to predict a hidden
    layer from the rest, and both deep read-outs: `recon_<layer>` is the MSE of anchor + residual (the gate
    open) and `direct_<layer>` the MSE of the direct read-out, each unweighted. Per-PTM KL counts observed
    entries only. Targets are treated as constants.
    """
    layers = [*config.target_dims, *config.ptm_dims]
    missing = [name for name in layers if name not in targets]
    if missing:
        raise ValueError(f"targets lack layers {missing}")
    paths = output.paths
    truth = torch.cat([targets[name].detach() for name in layers], dim=1)
    anchor, residual, direct = (torch.cat([paths[p][name] for name in layers], dim=1) for p in PATHS)
    dims = [targets[name].shape[1] for name in layers]
    recon, direct_mse = (
        _mean_squares(prediction - truth, dims) for prediction in (anchor + residual, direct)
    )
    weights = truth.new_tensor([config.recon_weights.get(name, 1.0) for name in layers])
    reconstruction = (weights * (recon + direct_mse)).sum()
    terms = {f"recon_{name}": value for name, value in zip(layers, recon.unbind())}
    terms |= {f"direct_{name}": value for name, value in zip(layers, direct_mse.unbind())}
    mu, logvar = (
        torch.stack([of[n] for n in config.ptm_dims], dim=1) for of in (output.ptm_mu, output.ptm_logvar)
    )
    per_ptm = gaussian_kl(mu, logvar)  # (B, n_ptm)
    observed_kl = torch.where(ptm_mask, per_ptm, 0.0).sum() / ptm_mask.sum().clamp(min=1)
    kl = config.beta_kl * (observed_kl + gaussian_kl(output.joint_mu, output.joint_logvar).mean())
    contrastive = config.contrastive_weight * info_nce(output.z_seed, output.z_state, config.temperature)
    return {
        "total": reconstruction + kl + contrastive,
        "reconstruction": reconstruction,
        "kl": kl,
        "contrastive": contrastive,
        **terms,
    }


PATTERN_KINDS = ("all", "genomics_only", "keep_one", "drop_one", "drop_two")


def training_patterns(n_ptm: int) -> tuple[Tensor, Tensor]:
    """The masking patterns training and the questions use, (K, n_ptm) with True = observed, and the
    probability of each in training: one of five kinds with equal probability (all observed, all
    masked = genomics-only, one layer kept, one layer masked, two layers masked), then a pattern of
    that kind uniformly. Only these patterns have anchors: K grows as n_ptm^2, not 2^n_ptm.
    """
    if n_ptm < 1:
        raise ValueError(f"need n_ptm >= 1, got {n_ptm}")
    eye = torch.eye(n_ptm, dtype=torch.bool)
    pairs = [~(eye[i] | eye[j]) for i in range(n_ptm) for j in range(i + 1, n_ptm)] or [eye[0] & ~eye[0]]
    kinds = [
        torch.ones(1, n_ptm, dtype=torch.bool),
        torch.zeros(1, n_ptm, dtype=torch.bool),
        eye,
        ~eye,
        torch.stack(pairs),
    ]
    weights: dict[tuple[bool, ...], float] = {}
    for rows in kinds:
        for row in rows:
            key = tuple(row.tolist())
            weights[key] = weights.get(key, 0.0) + 1.0 / (len(kinds) * len(rows))
    return torch.tensor(list(weights), dtype=torch.bool), torch.tensor(list(weights.values()))


def sample_ptm_mask(n: int, n_ptm: int, generator: torch.Generator) -> Tensor:
    """Training masks (n, n_ptm), True = observed, drawn from `training_patterns`; only `generator`
    supplies randomness."""
    patterns, probabilities = training_patterns(n_ptm)
    return patterns[torch.multinomial(probabilities, n, replacement=True, generator=generator)]


def masking_patterns(ptm_names: list[str]) -> dict[str, Tensor]:
    """Named evaluation masks (n_ptm,), True = observed: all, genomics_only, without_<p>, only_<p>."""
    n = len(ptm_names)
    patterns = {"all": torch.ones(n, dtype=torch.bool), "genomics_only": torch.zeros(n, dtype=torch.bool)}
    for i, name in enumerate(ptm_names):
        patterns[f"without_{name}"] = torch.arange(n) != i
    for i, name in enumerate(ptm_names):
        patterns[f"only_{name}"] = torch.arange(n) == i
    return patterns


def evaluation_patterns(layer: str, ptm_names: list[str]) -> list[str]:
    """The named patterns under which a layer's prediction is judged, one per `INPUTS`: with every other
    input, and from genomics alone (a PTM layer is never an input of its own prediction)."""
    return [f"without_{layer}" if layer in ptm_names else "all", "genomics_only"]


def count_parameters(model: nn.Module) -> list[tuple[str, int]]:
    """Parameter count of each top-level block, in registration order (own parameters, if any, last)."""
    blocks = [(name, sum(p.numel() for p in child.parameters())) for name, child in model.named_children()]
    own = sum(p.numel() for p in model.parameters(recurse=False))
    return blocks + [("(own)", own)] if own else blocks
