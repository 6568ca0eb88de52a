"""Figures of the book: each function returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lpmlib.cohort import Cohort


def cooccurrence_heatmap(cooccurrence: pd.DataFrame) -> Figure:
    """Patients carrying both drivers of each pair; the diagonal holds each driver's carriers."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(np.log1p(cooccurrence.to_numpy()), cmap="viridis")
    ax.set_xticks(range(len(cooccurrence)), cooccurrence.columns, rotation=90)
    ax.set_yticks(range(len(cooccurrence)), cooccurrence.index)
    for (i, j), count in np.ndenumerate(cooccurrence.to_numpy()):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(image, ax=ax, label="log(1 + patients)")
    ax.set_title("Driver co-occurrence (patients)")
    fig.tight_layout()
    return fig


def layer_pcs_by_driver(cohort: Cohort, layer: str, driver: str) -> Figure:
    """The first two principal components of one layer, patients coloured by a driver's status."""
    values = cohort.layers[layer].values
    status = cohort.driver(driver).astype(bool)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for altered, colour, label in ((False, "#9e9e9e", "wild type"), (True, "#d62728", "altered")):
        chosen = values[status == altered]
        ax.scatter(chosen.iloc[:, 0], chosen.iloc[:, 1], s=14, c=colour, label=f"{driver} {label} (n={len(chosen)})")
    ax.set_xlabel(f"{layer} {values.columns[0]}")
    ax.set_ylabel(f"{layer} {values.columns[1]}")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"{layer}: first two components by {driver} status")
    fig.tight_layout()
    return fig


def learning_curves(histories: dict[int, pd.DataFrame]) -> Figure:
    """Training and validation loss per epoch, one panel per fold."""
    fig, axes = plt.subplots(1, len(histories), figsize=(2.6 * len(histories), 3.2), sharey=True, squeeze=False)
    for ax, (fold, history) in zip(axes[0], histories.items()):
        ax.plot(history["epoch"], history["train_loss"], label="training")
        ax.plot(history["epoch"], history["validation_loss"], label="validation")
        best = history["validation_loss"].idxmin()
        ax.axvline(history.loc[best, "epoch"], color="grey", lw=0.8, ls=":")
        ax.set_title(f"fold {fold}")
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylabel("loss")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def r2_by_layer(summary: pd.DataFrame, metric: str = "r2_variance_weighted") -> Figure:
    """Held-out R^2 per layer and method: cross-fold mean with its 95% interval; the noise ceiling as a tick."""
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
        ax.scatter(np.arange(len(layers)), ceiling, marker="_", s=600, color="black", label="noise ceiling", zorder=3)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(layers)), layers)
    ax.set_ylabel(f"held-out {metric.replace('_', ' ')}")
    ax.legend(frameon=False, fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    return fig
