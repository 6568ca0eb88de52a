"""Tables that describe the model for the Methods chapter: blocks, shapes, masking patterns, and how
much signal the PTM encoders carry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lpmlib.cohort import Cohort
from lpmlib.model import LatentPerturbationModel, count_parameters, masking_patterns, training_patterns
from lpmlib.tensors import CohortTensors, LayerScaler

BLOCK_ROLES = {
    "genomics": "self-attention over one token per driver (embedding x presence) and a grade token",
    "seed_head": "z_seed: the state expected from genomics and grade alone",
    "ptm_encoders": "one VAE encoder per PTM layer (mean and log-variance)",
    "joint_encoder": "multi-omic VAE encoder over all observed PTM layers and the mask",
    "fusion": "z_state from the genomic embedding, the PTM latents, the mask and the joint latent",
    "anchor": "closed-form linear anchor of every layer, one per masking pattern (fitted, not trained)",
    "target_decoders": "residual read-out of RNA, protein (from z_state and the RNA anchor) and metabolome",
    "ptm_decoders": "residual read-out of every PTM layer from z_state",
    "direct_target_decoders": "direct read-out (the deep model alone) of RNA, protein (from z_state and "
    "the direct RNA) and metabolome",
    "direct_ptm_decoders": "direct read-out of every PTM layer from z_state",
}


def architecture_table(model: LatentPerturbationModel) -> pd.DataFrame:
    """One row per block of the model: what it does and how many parameters it has."""
    rows = [
        {"block": name, "role": BLOCK_ROLES.get(name, ""), "parameters": n}
        for name, n in count_parameters(model)
    ]
    table = pd.DataFrame(rows).set_index("block")
    table.loc["total"] = ["", int(table["parameters"].sum())]
    return table


@torch.no_grad()
def forward_shapes(model: LatentPerturbationModel, data: CohortTensors) -> pd.DataFrame:
    """The shape of every input and output tensor of one forward pass (all PTM layers observed)."""
    model.eval()
    names = list(model.config.ptm_dims)
    mask = torch.ones(len(data), len(names), dtype=torch.bool)
    output = model(data.drivers, data.grade, {n: data.layers[n] for n in names}, mask)
    tensors = {"input: drivers": data.drivers, "input: grade": data.grade, "input: PTM mask": mask}
    tensors |= {f"input: {n}": data.layers[n] for n in names}
    tensors |= {"attention weights": output.attention, "z_seed": output.z_seed, "z_state": output.z_state}
    tensors |= {f"output: {n}": p for n, p in output.predictions.items()}
    return pd.DataFrame({"shape": {k: tuple(v.shape) for k, v in tensors.items()}}).rename_axis("tensor")


def pattern_table(ptm_names: list[str]) -> pd.DataFrame:
    """The named masking patterns of the questions: which PTM layers each one lets the model see."""
    patterns = masking_patterns(ptm_names)
    rows = {
        name: ["observed" if seen else "masked" for seen in row.tolist()] for name, row in patterns.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=ptm_names).rename_axis("pattern")


def training_pattern_table(ptm_names: list[str]) -> pd.DataFrame:
    """Every masking pattern of training (the patterns with an anchor) and its probability."""
    patterns, probabilities = training_patterns(len(ptm_names))
    rows = [["observed" if seen else "masked" for seen in row] for row in patterns.tolist()]
    table = pd.DataFrame(rows, columns=ptm_names)
    table["probability"] = probabilities.numpy().round(4)
    return table.rename_axis("pattern")


@torch.no_grad()
def posterior_snr(model: LatentPerturbationModel, data: CohortTensors) -> dict[str, float]:
    """Per PTM encoder and the joint encoder: the variance of the posterior means across patients over
    the mean posterior variance, averaged over latent dimensions, with every PTM layer observed. Below 1
    a code is mostly sampling noise in training; far above 1 it carries the patients' differences."""
    model.eval()
    names = list(model.config.ptm_dims)
    mask = torch.ones(len(data), len(names), dtype=torch.bool)
    output = model(data.drivers, data.grade, {n: data.layers[n] for n in names}, mask)
    posteriors = {
        **{n: (output.ptm_mu[n], output.ptm_logvar[n]) for n in names},
        "joint": (output.joint_mu, output.joint_logvar),
    }
    return {
        name: float((mu.var(dim=0) / logvar.exp().mean(dim=0)).mean())
        for name, (mu, logvar) in posteriors.items()
    }


def posterior_snr_table(folds: list) -> pd.DataFrame:
    """Encoders x models: `posterior_snr` on each fold's held-out patients, a column per model."""
    from lpmlib.perturb import held_out

    table = pd.DataFrame({f.label: posterior_snr(f.model, held_out(f)) for f in folds})
    return table.rename_axis("encoder")


def example_batch(cohort: Cohort, n: int = 8) -> CohortTensors:
    """The first `n` patients as model inputs, standardised on the whole cohort (for illustration)."""
    rows = np.arange(cohort.n_patients)
    return CohortTensors.build(cohort, rows[:n], LayerScaler.fit(cohort, rows))
