"""Tables that describe the model for the Methods chapter: blocks, shapes, masking patterns, and how
much signal the PTM encoders carry; and the cohort's layers in words, for the prose of every chapter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lpmlib.cohort import Cohort
from lpmlib.model import (
    LatentPerturbationModel,
    ModelConfig,
    count_parameters,
    masking_patterns,
    training_patterns,
)
from lpmlib.tensors import CohortTensors, LayerScaler

BLOCK_ROLES = {
    "genomics": "self-attention over one token per driver (embedding x presence) and a token of the clinical "
    "covariate (grade or stage)",
    "seed_head": "z_seed: the state expected from genomics and the clinical covariate alone",
    "ptm_encoders": "one VAE encoder per PTM layer (mean and log-variance)",
    "joint_encoder": "multi-omic VAE encoder over all observed PTM layers and the mask",
    "fusion": "z_state from the genomic embedding, the PTM latents, the mask and the joint latent",
    "anchor": "closed-form linear anchor of every layer, one per masking pattern (fitted, not trained)",
    "ptm_decoders": "residual read-out of every PTM layer from z_state",
    "direct_ptm_decoders": "direct read-out of every PTM layer from z_state",
}
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
LAYER_WORDS = {
    "rna": "RNA",
    "metabolome": "the metabolome",
    "pY": "phosphotyrosine",
    "acetyl": "acetylation",
    "methyl": "methylation",
    "ubiq": "ubiquitination",
    "phospho": "phosphorylation",
}  # the seed layout's layer names in words; any other name is its own word
DOWNSTREAM = ("metabolome",)  # target layers that follow the PTM layers in the flow of information


def number_word(n: int) -> str:
    """`n` in words up to ten, in digits beyond."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def listed(items: list[str]) -> str:
    """Items in prose: "a", "a and b", "a, b and c"."""
    return " and ".join(filter(None, [", ".join(items[:-1]), *items[-1:]]))


def counted(n: int, noun: str) -> str:
    """`n` and its noun in words: "one PTM layer", "five PTM layers"."""
    return f"{number_word(n)} {noun}{'' if n == 1 else 's'}"


def layer_flow(cohort: Cohort) -> str:
    """The cohort's layers in the order information flows through the model, in words, for the prose:
    "RNA, protein, five layers of post-translational modification (PTM: ...) and the metabolome"."""
    ptms = [LAYER_WORDS.get(name, name) for name in cohort.ptm_names]
    upstream = [name for name in cohort.target_names if name not in DOWNSTREAM]
    downstream = [name for name in cohort.target_names if name in DOWNSTREAM]
    ptm_phrase = f"{counted(len(ptms), 'layer')} of post-translational modification (PTM: {listed(ptms)})"
    return listed(
        [*(LAYER_WORDS.get(n, n) for n in upstream), ptm_phrase, *(LAYER_WORDS.get(n, n) for n in downstream)]
    )


def layers_sentence(cohort: Cohort) -> str:
    """The cohort's layers by role, under the names the tables use."""
    targets, ptms = cohort.target_names, cohort.ptm_names
    return (
        f"This cohort has {counted(len(targets), 'target layer')} ({listed(targets)}) and "
        f"{counted(len(ptms), 'PTM layer')} ({listed(ptms)})."
    )


def decoded_targets(config: ModelConfig, parent_source: str) -> str:
    """The model's targets in words, each with the parents it is decoded from (`parent_source`: "the
    {} anchor" or "the direct {}")."""
    return listed(
        [
            f"{target} (from z_state and {listed([parent_source.format(p) for p in parents])})"
            if (parents := config.target_parents.get(target))
            else target
            for target in config.target_dims
        ]
    )


def target_roles(config: ModelConfig) -> dict[str, str]:
    """The roles of the target read-outs, naming this model's targets and their parents."""
    return {
        "target_decoders": f"residual read-out of {decoded_targets(config, 'the {} anchor')}",
        "direct_target_decoders": "direct read-out (the deep model alone) of "
        + decoded_targets(config, "the direct {}"),
    }


def architecture_table(model: LatentPerturbationModel) -> pd.DataFrame:
    """One row per block of the model: what it does and how many parameters it has."""
    roles = BLOCK_ROLES | target_roles(model.config)
    rows = [
        {"block": name, "role": roles.get(name, ""), "parameters": n} for name, n in count_parameters(model)
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
