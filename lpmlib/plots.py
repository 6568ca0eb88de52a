"""Figures of the book: each function returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lpmlib.cohort import Cohort


def heatmap(matrix: pd.DataFrame, title: str, label: str, fmt: str = "{:.2f}", log: bool = False) -> Figure:
    """A labelled matrix with its values written in the cells (NaN cells left blank)."""
    values = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(0.38 * matrix.shape[1] + 2.5, 0.34 * matrix.shape[0] + 1.5))
    image = ax.imshow(np.log1p(values) if log else values, cmap="viridis")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90)
    ax.set_yticks(range(matrix.shape[0]), matrix.index)
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value) and (value or not log):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(image, ax=ax, label=f"log(1 + {label})" if log else label)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def cooccurrence_heatmap(cooccurrence: pd.DataFrame) -> Figure:
    """Patients carrying both drivers of each pair; the diagonal holds each driver's carriers."""
    return heatmap(cooccurrence, "Driver co-occurrence (patients)", "patients", fmt="{:.0f}", log=True)


def interval_bars(
    summary: pd.DataFrame,
    label: str,
    ylabel: str,
    title: str,
    highlight: str | None = None,
    references: dict[str, float] | None = None,
) -> Figure:
    """Cross-fold means with 95% intervals, one bar per row of a summary table, in its order."""
    fig, ax = plt.subplots(figsize=(0.45 * len(summary) + 2.5, 3.6))
    x = np.arange(len(summary))
    errors = np.vstack([summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]])
    colours = ["#d62728" if name == highlight else "#1f77b4" for name in summary[label]]
    ax.bar(x, summary["mean"], yerr=np.nan_to_num(errors), capsize=2, color=colours)
    for (name, value), style in zip((references or {}).items(), ("--", ":", "-.")):
        ax.axhline(value, color="black", lw=1, ls=style, label=name)
    if references:
        ax.legend(frameon=False, fontsize=8)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xticks(
        x,
        summary[label],
        rotation=45 if len(summary) > 5 else 0,
        ha="right" if len(summary) > 5 else "center",
    )
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def layer_pcs_by_driver(cohort: Cohort, layer: str, driver: str) -> Figure:
    """The first two principal components of one layer (the first target layer when ""), patients
    coloured by a driver's status (the first driver when "")."""
    layer, driver = layer or cohort.target_names[0], driver or cohort.driver_names[0]
    values = cohort.layers[layer].values
    status = cohort.driver(driver).astype(bool)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for altered, colour, label in ((False, "#9e9e9e", "wild type"), (True, "#d62728", "altered")):
        chosen = values[status == altered]
        ax.scatter(
            chosen.iloc[:, 0], chosen.iloc[:, 1], s=14, c=colour, label=f"{driver} {label} (n={len(chosen)})"
        )
    ax.set_xlabel(f"{layer} {values.columns[0]}")
    ax.set_ylabel(f"{layer} {values.columns[1]}")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"{layer}: first two components by {driver} status")
    fig.tight_layout()
    return fig


def learning_curves(folds: list) -> Figure:
    """Training and inner-validation loss per epoch (0: the untrained network), one panel per fold with a
    line per model of the fold (`lpmlib.cv.FoldResult`s)."""
    numbers = list(dict.fromkeys(fold.fold for fold in folds))
    fig, axes = plt.subplots(1, len(numbers), figsize=(2.6 * len(numbers), 3.2), sharey=True, squeeze=False)
    for fold in folds:
        ax, first = axes[0, numbers.index(fold.fold)], fold.training_seed == 1
        history, alpha = fold.history, 1.0 if first else 0.5
        for column, colour, label in (
            ("train_loss", "C0", "training"),
            ("validation_loss", "C1", "validation"),
        ):
            ax.plot(
                history["epoch"], history[column], color=colour, alpha=alpha, label=label if first else None
            )
        ax.set_title(f"fold {fold.fold}")
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylabel("loss")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def r2_by_layer(summary: pd.DataFrame, metric: str = "r2_variance_weighted") -> Figure:
    """Held-out R^2 per layer and method: cross-fold mean with its 95% interval; the noise ceiling as a
    tick."""
    chosen = summary[summary["metric"] == metric]
    layers = list(dict.fromkeys(chosen["layer"]))
    methods = [m for m in dict.fromkeys(chosen["method"]) if m != "noise_ceiling"]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.1 * len(layers) + 2, 3.8))
    for i, method in enumerate(methods):
        rows = chosen[chosen["method"] == method].set_index("layer").reindex(layers)
        x = np.arange(len(layers)) + (i - (len(methods) - 1) / 2) * width
        errors = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]])
        ax.bar(x, rows["mean"], width, yerr=np.nan_to_num(errors), capsize=2, label=method)
    ceiling = chosen[chosen["method"] == "noise_ceiling"].set_index("layer").reindex(layers)["mean"]
    if ceiling.notna().any():
        ax.scatter(
            np.arange(len(layers)), ceiling, marker="_", s=600, color="black", label="noise ceiling", zorder=3
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(layers)), layers)
    ax.set_ylabel(f"held-out {metric.replace('_', ' ')}")
    ax.legend(frameon=False, fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    return fig


def r2_by_cohort_size(curve: pd.DataFrame, inputs: str = "all") -> Figure:
    """Held-out R^2 against the number of patients (log scale), one panel per target layer: each model's
    cross-fold mean with its 95% interval, and the noise ceiling as a dashed line."""
    layers = list(dict.fromkeys(curve["layer"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.4), sharey=True, squeeze=False)
    for ax, layer in zip(axes[0], layers):
        rows = curve[curve["layer"] == layer]
        for model, line in rows[rows["inputs"] == inputs].groupby("model", sort=False):
            ax.errorbar(
                line["n_patients"],
                line["mean"],
                capsize=2,
                marker="o",
                label=model,
                yerr=np.nan_to_num([line["mean"] - line["ci_low"], line["ci_high"] - line["mean"]]),
            )
        ceiling = rows[rows["model"] == "noise_ceiling"]
        ax.plot(ceiling["n_patients"], ceiling["mean"], color="black", ls="--", lw=1, label="noise ceiling")
        ax.set_xscale("log")
        ax.set_title(layer)
        ax.set_xlabel("patients")
    axes[0, 0].set_ylabel(f"held-out R^2 ({inputs.replace('_', ' ')} inputs)")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
