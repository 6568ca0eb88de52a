"""The Latent Perturbation Model (LPM): genomics, grade and PTM layers -> latent tumour state -> omic layers.

Drivers and grade give a genomic embedding through self-attention with one token per driver; each PTM
layer is encoded by its own VAE, and all PTM layers together by a multi-omic VAE. A fusion MLP turns
these into `z_state`, from which every target layer (conditioned on its biological parents) and every
PTM layer is decoded. A masked PTM layer never influences any output, so with all PTM layers masked the
model is its genomics-only path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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

    def __post_init__(self) -> None:
        for name in ("ptm_dims", "target_dims", "recon_weights"):
            object.__setattr__(self, name, dict(getattr(self, name)))
        object.__setattr__(self, "target_parents", {k: list(v) for k, v in self.target_parents.items()})
        self._validate()

    def _validate(self) -> None:
        for name in ("n_drivers", "n_grades", "latent_dim", "vae_latent_dim", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
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
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.beta_kl < 0 or self.contrastive_weight < 0:
            raise ValueError("beta_kl and contrastive_weight must be >= 0")

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


def _mlp(n_in: int, n_hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    """One hidden layer with LayerNorm (not BatchNorm: masked zeros would pollute batch statistics)."""
    return nn.Sequential(
        nn.Linear(n_in, n_hidden),
        nn.LayerNorm(n_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(n_hidden, n_out),
    )


class GaussianEncoder(nn.Module):
    """Diagonal Gaussian posterior q(z | x): an MLP to mean and log-variance."""

    def __init__(self, n_in: int, n_hidden: int, n_latent: int, dropout: float) -> None:
        super().__init__()
        self.body = _mlp(n_in, n_hidden, n_hidden, dropout)
        self.mu = nn.Linear(n_hidden, n_latent)
        self.logvar = nn.Linear(n_hidden, n_latent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.gelu(self.body(x))
        return self.mu(h), self.logvar(h)


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
        """Genomic embedding (B, dim) and head-averaged attention weights (B, n_tokens, n_tokens)."""
        driver_tokens = self.driver_embedding.unsqueeze(0) * drivers.unsqueeze(-1)
        tokens = torch.cat([driver_tokens, self.grade_embedding(grade).unsqueeze(1)], dim=1)
        attended, weights = self.attention(
            tokens, tokens, tokens, need_weights=True, average_attn_weights=True
        )
        return self.norm(tokens + attended).mean(dim=1), weights


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
        self.target_decoders = nn.ModuleDict({
            name: _mlp(d + sum(config.target_dims[q] for q in config.target_parents.get(name, [])), d, dim, p)
            for name, dim in config.target_dims.items()
        })
        self.ptm_decoders = nn.ModuleDict({name: _mlp(d, d, dim, p) for name, dim in config.ptm_dims.items()})

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

    def forward(self, drivers: Tensor, grade: Tensor, ptms: dict[str, Tensor], ptm_mask: Tensor) -> LPMOutput:
        """One pass; `ptm_mask[:, i]` is True where PTM layer i is observed, False where it is masked."""
        self._check_inputs(drivers, ptms, ptm_mask)
        names = list(self.config.ptm_dims)
        observed = {name: ptm_mask[:, i : i + 1] for i, name in enumerate(names)}
        visible = {name: torch.where(observed[name], ptms[name], 0.0) for name in names}
        mask_float = ptm_mask.to(drivers.dtype)

        g, attention = self.genomics(drivers, grade)
        z_seed = self.seed_head(g)
        ptm_mu, ptm_logvar, ptm_z = {}, {}, []
        for name in names:
            ptm_mu[name], ptm_logvar[name] = self.ptm_encoders[name](visible[name])
            ptm_z.append(torch.where(observed[name], self._sample(ptm_mu[name], ptm_logvar[name]), 0.0))
        joint_mu, joint_logvar = self.joint_encoder(torch.cat([*visible.values(), mask_float], dim=1))
        z_joint = self._sample(joint_mu, joint_logvar)
        z_state = self.fusion(torch.cat([g, *ptm_z, mask_float, z_joint], dim=1))

        predictions: dict[str, Tensor] = {}
        for name, decoder in self.target_decoders.items():
            parents = [predictions[q] for q in self.config.target_parents.get(name, [])]
            predictions[name] = decoder(torch.cat([z_state, *parents], dim=1))
        for name, decoder in self.ptm_decoders.items():
            predictions[name] = decoder(z_state)
        return LPMOutput(predictions, z_state, z_seed, ptm_mu, ptm_logvar, joint_mu, joint_logvar, attention)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Per-sample KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions: (B,)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between L2-normalised rows of `a` and `b`; row i of each is the positive pair."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def lpm_loss(
    output: LPMOutput, targets: dict[str, Tensor], ptm_mask: Tensor, config: ModelConfig
) -> dict[str, Tensor]:
    """Scalar loss terms: `total` = `reconstruction` + `kl` + `contrastive` (the last two weighted).

    Reconstruction covers every layer, masked PTM layers included, so the model learns to predict a hidden
    layer from the rest; `recon_<layer>` is that layer's unweighted MSE. Per-PTM KL counts observed
    entries only. Targets are treated as constants.
    """
    layers = [*config.target_dims, *config.ptm_dims]
    missing = [name for name in layers if name not in targets]
    if missing:
        raise ValueError(f"targets lack layers {missing}")
    terms = {f"recon_{name}": F.mse_loss(output.predictions[name], targets[name].detach()) for name in layers}
    reconstruction = sum(config.recon_weights.get(name, 1.0) * terms[f"recon_{name}"] for name in layers)

    per_ptm = torch.stack(
        [gaussian_kl(output.ptm_mu[name], output.ptm_logvar[name]) for name in config.ptm_dims], dim=1
    )
    observed_kl = torch.where(ptm_mask, per_ptm, 0.0).sum() / ptm_mask.sum().clamp(min=1)
    kl = config.beta_kl * (observed_kl + gaussian_kl(output.joint_mu, output.joint_logvar).mean())
    contrastive = config.contrastive_weight * info_nce(output.z_seed, output.z_state, config.temperature)
    return {"total": reconstruction + kl + contrastive, "reconstruction": reconstruction, "kl": kl,
            "contrastive": contrastive, **terms}


def sample_ptm_mask(n: int, n_ptm: int, generator: torch.Generator, modality_dropout: float = 0.2) -> Tensor:
    """Training masks (n, n_ptm), True = observed; each row is, with equal probability, independent
    dropout (each layer masked with probability `modality_dropout`), genomics-only (all masked),
    keep-one or drop-one (one random layer kept, resp. masked). Only `generator` supplies randomness."""
    if n_ptm < 1 or not 0.0 <= modality_dropout <= 1.0:
        raise ValueError(f"need n_ptm >= 1 and modality_dropout in [0, 1], got {n_ptm}, {modality_dropout}")
    kind = torch.randint(0, 4, (n,), generator=generator)
    independent = torch.rand(n, n_ptm, generator=generator) >= modality_dropout
    chosen = F.one_hot(torch.randint(0, n_ptm, (n,), generator=generator), n_ptm).bool()
    patterns = torch.stack([independent, torch.zeros_like(chosen), chosen, ~chosen])  # (4, n, n_ptm)
    return patterns[kind, torch.arange(n)]


def masking_patterns(ptm_names: list[str]) -> dict[str, Tensor]:
    """Named evaluation masks (n_ptm,), True = observed: all, genomics_only, without_<p>, only_<p>."""
    n = len(ptm_names)
    patterns = {"all": torch.ones(n, dtype=torch.bool), "genomics_only": torch.zeros(n, dtype=torch.bool)}
    for i, name in enumerate(ptm_names):
        patterns[f"without_{name}"] = torch.arange(n) != i
    for i, name in enumerate(ptm_names):
        patterns[f"only_{name}"] = torch.arange(n) == i
    return patterns


def count_parameters(model: nn.Module) -> list[tuple[str, int]]:
    """Parameter count of each top-level block, in registration order (own parameters, if any, last)."""
    blocks = [(name, sum(p.numel() for p in child.parameters())) for name, child in model.named_children()]
    own = sum(p.numel() for p in model.parameters(recurse=False))
    return blocks + [("(own)", own)] if own else blocks
