"""What the questions that edit the genome share (Q1 gene knockout, Q2 fusion deletion, Q4 resistance
driver): edits run through each fold's trained model (genomics-only path) on all of its held-out
patients, measured per carrier, per fold and across folds.

Per-fold tables are long: one row per driver, layer (or `z_state`), quantity, fold and training seed,
with the value, the held-out patients `n_patients` and carriers `n_carriers` it rests on, and a `note`
that is empty or says why the value is NaN. Summary tables hold the mean, 95% t-interval, number of
finite folds and per-fold values (`stats.summarise_folds`), plus the patients and carriers summed over
folds (each patient is held out once, so these are cohort totals).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lpmlib.cv import FoldResult
from lpmlib.perturb import Z_STATE, DriverEdit, edit_drivers, observed_held_out
from lpmlib.stats import SEED, mean_rms, one_seed, summarise_folds

PER_FOLD_COLUMNS = ["driver", "layer", "quantity", "fold", SEED, "value", "n_patients", "n_carriers", "note"]
SUMMARY_KEYS = ["driver", "layer", "quantity"]
COUNTS = ["n_patients", "n_carriers"]

# ---------------------------------------------------------------------------------------------
# Small measures, NaN (never 0) when there is nothing to measure


def no_carrier_note(driver: str) -> str:
    return f"no carrier of {driver} in this fold's held-out patients"


def mean_norm(change: np.ndarray) -> float:
    """Mean over rows of the L2 norm of each row; NaN without rows."""
    return float(np.linalg.norm(change, axis=1).mean()) if len(change) else np.nan


def residual_spread(fold: FoldResult, layer: str) -> float:
    """RMS over held-out patients and features of observed minus the genomics-only prediction."""
    residual = observed_held_out(fold, layer) - fold.predictions["genomics_only"][layer]
    return float(np.sqrt(np.mean(residual**2)))


def carrier_difference(values: np.ndarray, edit: DriverEdit) -> np.ndarray | None:
    """Mean of the carriers' rows minus mean of the non-carriers' (patients of unknown status are in
    neither); None when either group is empty."""
    if not edit.n_carriers or not len(edit.non_carriers):
        return None
    return values[edit.rows].mean(axis=0) - values[edit.non_carriers].mean(axis=0)


def shift(edit: DriverEdit, layer: str) -> np.ndarray:
    """Edited minus baseline output of every carrier: (n_carriers, dim)."""
    return edit.edited[layer] - edit.baseline[layer]


def shift_units(
    folds: list[FoldResult],
    edits: list[dict[str, DriverEdit]],
    driver: str,
    layers: list[str],
) -> pd.DataFrame:
    """Per held-out carrier of `driver` (`unit`) and layer: the RMS over features of its shift over the
    layer's residual spread, whose mean over carriers is the fold's `shift_standardised`."""
    frames = []
    for fold, fold_edits in zip(folds, edits):
        edit = fold_edits[driver]
        for layer in layers:
            spread = residual_spread(fold, layer)
            rms = np.sqrt(np.mean(shift(edit, layer) ** 2, axis=1))
            frames.append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        **fold.keys,
                        "unit": fold.test_rows[edit.rows],
                        "value": rms / spread if spread > 0 else np.nan,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def storm_units(folds: list[FoldResult], edits: list[dict[str, DriverEdit]]) -> pd.DataFrame:
    """Per driver and held-out carrier: the L2 norm of its z_state shift, whose mean over carriers is the
    fold's `storm_intensity`."""
    frames = [
        pd.DataFrame(
            {
                "driver": driver,
                **fold.keys,
                "unit": fold.test_rows[edit.rows],
                "value": np.linalg.norm(shift(edit, Z_STATE), axis=1),
            }
        )
        for fold, fold_edits in zip(folds, edits)
        for driver, edit in fold_edits.items()
    ]
    return pd.concat(frames, ignore_index=True)


def quantity_scores(
    per_fold: pd.DataFrame, item: str, quantity: str, layer: str | None = None
) -> pd.DataFrame:
    """The per-fold values of one quantity (and layer), as `stats.separate_best` takes them."""
    return per_fold[(per_fold["quantity"] == quantity) & ((per_fold["layer"] == layer) if layer else True)]


# ---------------------------------------------------------------------------------------------
# The per-fold table of knockouts (Q1, Q2 and the permutation null)


def knockout_row(
    driver: str, layer: str, quantity: str, value: float, fold: FoldResult, edit: DriverEdit, note: str
) -> dict:
    return {
        "driver": driver,
        "layer": layer,
        "quantity": quantity,
        **fold.keys,
        "value": value,
        "n_patients": len(fold.test_rows),
        "n_carriers": edit.n_carriers,
        "note": note,
    }


def layer_quantities(
    driver: str, layer: str, edit: DriverEdit, spread: float, observed: np.ndarray, absent: str
) -> dict[str, tuple[float, str]]:
    """shift_rms, shift_standardised and observed_difference_rms of one layer, each with its NaN reason."""
    rms = mean_rms(shift(edit, layer))
    if spread > 0:
        standardised = (rms / spread, absent)
    else:
        exact = f"the genomics-only prediction of {layer} is exact: no residual spread"
        standardised = (np.nan, absent or exact)
    difference = carrier_difference(observed, edit)
    if difference is None:
        everyone = (
            f"every held-out patient carries {driver}: no non-carrier to compare"
            if edit.n_carriers == len(observed)
            else f"no held-out patient is known not to carry {driver}: no non-carrier to compare"
        )
        observed_rms = (np.nan, absent or everyone)
    else:
        observed_rms = (float(np.sqrt(np.mean(difference**2))), "")
    return {
        "shift_rms": (rms, absent),
        "shift_standardised": standardised,
        "observed_difference_rms": observed_rms,
    }


def knockout_fold_rows(fold: FoldResult, edits: dict[str, DriverEdit]) -> list[dict]:
    """The per-fold rows of the knockouts in `edits` (one batched edit of this fold)."""
    cohort = fold.cohort
    layers = cohort.target_names + cohort.ptm_names
    spread = {layer: residual_spread(fold, layer) for layer in layers}
    observed = {layer: observed_held_out(fold, layer) for layer in layers}
    rows = []
    for driver, edit in edits.items():
        absent = "" if edit.n_carriers else no_carrier_note(driver)
        storm = mean_norm(shift(edit, Z_STATE))
        rows.append(knockout_row(driver, Z_STATE, "storm_intensity", storm, fold, edit, absent))
        for layer in layers:
            quantities = layer_quantities(driver, layer, edit, spread[layer], observed[layer], absent)
            for quantity, (value, note) in quantities.items():
                rows.append(knockout_row(driver, layer, quantity, value, fold, edit, note))
    return rows


def per_fold_table(folds: list[FoldResult], edits: list[dict[str, DriverEdit]]) -> pd.DataFrame:
    """Q1's per-fold rows of knockouts already run, one dict of edits per fold."""
    rows = [row for fold, edit in zip(folds, edits) for row in knockout_fold_rows(fold, edit)]
    return pd.DataFrame(rows, columns=PER_FOLD_COLUMNS)


def knockout_per_fold(folds: list[FoldResult], drivers: list[str] | None = None) -> pd.DataFrame:
    """Q1's per-fold table for `drivers` (default all), one batched knockout per fold.

    Quantities: `storm_intensity` (layer `z_state`): mean over carriers of the L2 norm of the
    z_state shift (model units); per target and PTM layer, `shift_rms`: mean over carriers of the
    RMS over features of the predicted shift (original units, PC scores); `shift_standardised`:
    shift_rms over the fold's held-out residual spread of the layer (RMS over patients and features
    of observed minus genomics-only prediction); `observed_difference_rms`: RMS over features of the
    held-out carriers' mean minus the non-carriers' mean of the observed layer. A shift is
    knocked-out minus factual.
    """
    return per_fold_table(folds, [edit_drivers(fold, "knockout", drivers) for fold in folds])


def summarise(per_fold: pd.DataFrame, by: list[str], counts: list[str] = COUNTS) -> pd.DataFrame:
    """`stats.summarise_folds` plus the patients and carriers summed over folds."""
    totals = one_seed(per_fold).groupby(by, sort=False)[counts].sum().reset_index()
    return summarise_folds(per_fold, by=by).merge(totals, on=by, how="left")
