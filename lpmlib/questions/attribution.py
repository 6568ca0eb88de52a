"""Q3 master regulators: which drivers the predicted PTM state is attributed to.

The scalar explained per patient is the PTM deviation from the wild type, on the genomics-only path
(every PTM layer masked: the in-silico cell runs on drivers and grade alone):

    F(genome) = mean over every feature of every PTM layer of (prediction(genome) - prediction(0))^2

in standardised model units (each feature centred and each layer divided by one scale, both from the
fold's training patients), with the grade held at the patient's own grade, so F(wild type) = 0.
Integrated gradients (captum) from the wild-type genome split F(genome) exactly among the drivers
(completeness: attributions sum to F(genome) - F(0)); a non-carrier's attribution is exactly 0,
since its input equals the baseline. Plain gradient saliency |dF/d driver| at the patient's genome is
the local sensitivity the method names. Both run on all held-out patients of a fold in one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients, Saliency

from lpmlib.cv import FoldResult
from lpmlib.perturb import held_out, ptm_mask
from lpmlib.questions import Answer, verdict_table
from lpmlib.stats import model_keys, rank_stability, seed_means, separate_best, summarise_folds

ATTRIBUTION_METRICS = ("ig_mean_abs", "ig_mean_carriers", "saliency_mean")
Deviation = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def genomics_only_ptm_state(
    model: torch.nn.Module, ptm_dims: dict[str, int], drivers: torch.Tensor, grade: torch.Tensor
) -> torch.Tensor:
    """Every PTM layer's prediction, concatenated (B, total features), with every PTM layer masked."""
    n = drivers.shape[0]
    ptms = {name: drivers.new_zeros(n, dim) for name, dim in ptm_dims.items()}
    output = model(drivers, grade, ptms, ptm_mask(n, list(ptm_dims)))
    return torch.cat([output.predictions[name] for name in ptm_dims], dim=1)


def ptm_deviation(model: torch.nn.Module, ptm_dims: dict[str, int]) -> Deviation:
    """F(drivers, grade, wild_type_state): mean squared deviation of the PTM state from the wild type's."""

    def deviation(drivers: torch.Tensor, grade: torch.Tensor, wild_type: torch.Tensor) -> torch.Tensor:
        state = genomics_only_ptm_state(model, ptm_dims, drivers, grade)
        return (state - wild_type).pow(2).mean(dim=1)

    return deviation


@dataclass
class DriverAttributions:
    """A fold's held-out patients: attributions (n, n_drivers), F(genome) (n,), completeness error (n,)."""

    genome: np.ndarray  # the patients' 0/1 drivers
    integrated_gradients: np.ndarray
    saliency: np.ndarray
    deviation: np.ndarray  # F(genome); F(wild type) = 0
    completeness_error: np.ndarray  # sum of IG attributions - (F(genome) - F(wild type))


def attribute_drivers(fold: FoldResult, n_steps: int = 64) -> DriverAttributions:
    """Integrated gradients from the wild-type genome and gradient saliency for every held-out patient."""
    model = fold.model.eval()
    data = held_out(fold)
    view = fold.cohort
    ptm_dims = {name: view.layers[name].n_features for name in view.ptm_names}
    forward = ptm_deviation(model, ptm_dims)
    wild_genome = torch.zeros_like(data.drivers)
    with torch.no_grad():  # the wild type's PTM state, with each patient's own grade
        wild_type = genomics_only_ptm_state(model, ptm_dims, wild_genome, data.grade)
        deviation = forward(data.drivers, data.grade, wild_type)
    ig, delta = IntegratedGradients(forward).attribute(
        data.drivers,
        baselines=wild_genome,
        additional_forward_args=(data.grade, wild_type),
        n_steps=n_steps,
        return_convergence_delta=True,
    )
    genome = data.drivers.clone().requires_grad_(True)
    saliency = Saliency(forward).attribute(genome, additional_forward_args=(data.grade, wild_type), abs=True)
    return DriverAttributions(
        genome=data.drivers.numpy().astype(bool),
        integrated_gradients=ig.detach().double().numpy(),
        saliency=saliency.detach().double().numpy(),
        deviation=deviation.double().numpy(),
        completeness_error=delta.detach().double().numpy(),
    )


def attribution_rows(fold: FoldResult, result: DriverAttributions) -> list[dict]:
    """One row per driver: attribution summaries over the fold's held-out patients and carriers."""
    cohort = fold.cohort
    rows = []
    for j, driver in enumerate(cohort.driver_names):
        carriers = result.genome[:, j]
        n_carriers = int(carriers.sum())
        on_carriers = result.integrated_gradients[carriers, j]
        rows.append(
            {
                "driver": driver,
                **fold.keys,
                "ig_mean_abs": float(np.abs(result.integrated_gradients[:, j]).mean()),
                "ig_mean_carriers": float(on_carriers.mean()) if n_carriers else np.nan,
                "saliency_mean": float(result.saliency[:, j].mean()),
                "n_patients": len(fold.test_rows),
                "n_carriers": n_carriers,
                "note": "" if n_carriers else "no carrier among the fold's held-out patients",
            }
        )
    return rows


def carrier_attributions(fold: FoldResult, result: DriverAttributions) -> pd.DataFrame:
    """Per driver and held-out carrier (`unit`): its integrated-gradients attribution to that driver."""
    cohort = fold.cohort
    frames = [
        pd.DataFrame(
            {
                "driver": driver,
                **fold.keys,
                "unit": fold.test_rows[result.genome[:, j]],
                "value": result.integrated_gradients[result.genome[:, j], j],
            }
        )
        for j, driver in enumerate(cohort.driver_names)
    ]
    return pd.concat(frames, ignore_index=True)


def completeness_row(fold: FoldResult, result: DriverAttributions) -> dict:
    """How exactly the attributions of one fold add up to F(genome) - F(wild type)."""
    return {
        **fold.keys,
        "n_patients": len(fold.test_rows),
        "deviation_mean": float(result.deviation.mean()),
        "deviation_max": float(result.deviation.max()),
        "ig_completeness_error": float(np.abs(result.completeness_error).max()),
        "note": "",
    }


def attribution_summary(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Per driver and metric: cross-fold mean, 95% interval and per-fold values."""
    long = per_fold.melt(
        id_vars=["driver", *model_keys(per_fold)], value_vars=list(ATTRIBUTION_METRICS), var_name="metric"
    )
    return summarise_folds(long, by=["driver", "metric"], value="value")


def ranking_stability(per_fold: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Per driver: fraction of folds in the top `top_k` by ig_mean_carriers and mean rank, best first."""
    per_fold = seed_means(per_fold, ["driver", "fold"], "ig_mean_carriers")
    ranks = per_fold.groupby("fold")["ig_mean_carriers"].rank(ascending=False, method="first")
    table = pd.DataFrame(
        {
            "fraction_top_k": rank_stability(per_fold, "driver", "ig_mean_carriers", top_k),
            "mean_rank": ranks.groupby(per_fold["driver"], sort=False).mean(),
            "n_folds_ranked": ranks.notna().groupby(per_fold["driver"], sort=False).sum(),
        }
    )
    table = table.rename_axis("driver").reset_index().assign(top_k=top_k)
    return table.sort_values(["mean_rank", "driver"], na_position="last", ignore_index=True)


def q3_master_regulators(folds: list[FoldResult], n_steps: int = 64, top_k: int = 3) -> Answer:
    """Attribution to each driver of the predicted PTM deviation from the wild type, per fold and overall.

    Tables: `q3_attribution_per_fold`, `q3_attribution_summary`, `q3_rank_stability` (ranked by the
    mean IG attribution over carriers), `q3_completeness` (max |sum of IG - (F(x) - F(0))| per fold),
    and `q3_comparison` and `q3_verdict`: the master regulator, the driver with the highest mean
    attribution over carriers where `stats.separate_best` separates it from every other driver
    (per-carrier attributions, a Mann-Whitney test: drivers have different carriers; and the folds).
    """
    rows, checks, units = [], [], []
    for fold in folds:
        result = attribute_drivers(fold, n_steps)
        rows += attribution_rows(fold, result)
        checks.append(completeness_row(fold, result))
        units.append(carrier_attributions(fold, result))
    per_fold = pd.DataFrame(rows)
    scores = per_fold.rename(columns={"ig_mean_carriers": "value"})
    separation = separate_best(scores, pd.concat(units, ignore_index=True), "driver", paired=False)
    verdict, completeness = (
        verdict_table(separation, "driver", {"metric": "ig_mean_carriers"}),
        pd.DataFrame(checks),
    )
    tables = {
        "q3_attribution_per_fold": per_fold,
        "q3_attribution_summary": attribution_summary(per_fold),
        "q3_rank_stability": ranking_stability(per_fold, top_k),
        "q3_completeness": completeness,
        "q3_comparison": separation.table.rename(columns={"item": "driver"}),
        "q3_verdict": verdict,
    }
    headline = {
        "q3_verdict": verdict.loc[0, "sentence"],
        "q3_completeness": float(completeness["ig_completeness_error"].max()),
    }
    return Answer(tables, headline)
