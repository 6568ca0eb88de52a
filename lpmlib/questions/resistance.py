"""Q4 resistance driver: for the carriers of each driver, all other drivers inhibited, how far the
state stays from the wild type's (and from normal tissue, where the cohort has normal samples)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from lpmlib.cv import FoldResult
from lpmlib.perturb import Z_STATE, edit_drivers, normal_state
from lpmlib.questions import Answer, verdict_table
from lpmlib.questions.shifts import COUNTS, no_carrier_note, summarise
from lpmlib.stats import SEED, separate_best

RESISTANCE_KEYS = ["driver", "quantity"]
RESISTANCE_COLUMNS = [
    "driver",
    "quantity",
    "fold",
    SEED,
    "value",
    "n_patients",
    "n_carriers",
    "n_carriers_alone",
    "note",
]
PATIENT_COLUMNS = [
    "driver",
    "fold",
    SEED,
    "case_id",
    "n_other_drivers",
    "distance_only",
    "distance_full",
    "distance_fraction",
]
NORMAL_PATIENT_COLUMNS = ["distance_only_normal", "distance_full_normal", "distance_fraction_normal"]


REFERENCES = {"": "the wild type's", "_normal": "the normal-tissue state"}  # column suffix -> the state


def reference_distances(
    z_only: np.ndarray, z_full: np.ndarray, z_reference: np.ndarray
) -> dict[str, np.ndarray]:
    """||z(only) - reference||, ||z(full) - reference|| and their ratio per carrier (NaN where
    z(full) is the reference state)."""
    d_only = np.linalg.norm(z_only - z_reference, axis=1)
    d_full = np.linalg.norm(z_full - z_reference, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(d_full > 0, d_only / d_full, np.nan)
    return {"distance_only": d_only, "distance_full": d_full, "distance_fraction": fraction}


def resistance_per_patient(fold: FoldResult) -> pd.DataFrame:
    """Per held-out carrier of each driver: distances of z_state from the wild-type z_state.

    `distance_only` = ||z(only this driver) - z(wild type)||, `distance_full` = ||z(own genome) -
    z(wild type)||, `distance_fraction` = their ratio (NaN when the full genome's z_state equals the
    wild type's). A carrier with no other driver has the same genome under `only`, so its z(only) is
    taken to be z(full) and its fraction is exactly 1 by construction. Two batched passes per fold.
    Where the cohort has normal samples, `distance_only_normal`, `distance_full_normal` and
    `distance_fraction_normal` measure the same from the fold's normal-tissue state (`normal_state`).
    """
    cohort = fold.cohort
    only = edit_drivers(fold, "only")
    wild = edit_drivers(fold, "wild_type")
    z_normal = normal_state(fold)
    genome = cohort.drivers.to_numpy()[fold.test_rows]
    case_ids = cohort.case_ids[fold.test_rows]
    columns = PATIENT_COLUMNS + (NORMAL_PATIENT_COLUMNS if z_normal is not None else [])
    tables = []
    for driver, edit in only.items():
        n_other = genome[edit.rows].sum(axis=1) - 1
        z_full = edit.baseline[Z_STATE]
        z_only = np.where((n_other == 0)[:, None], z_full, edit.edited[Z_STATE])
        table = {"driver": driver, **fold.keys, "case_id": case_ids[edit.rows], "n_other_drivers": n_other}
        table |= reference_distances(z_only, z_full, wild[driver].edited[Z_STATE])
        if z_normal is not None:
            normal = reference_distances(z_only, z_full, z_normal[None, :])
            table |= {f"{name}_normal": values for name, values in normal.items()}
        tables.append(pd.DataFrame(table, columns=columns))
    return pd.concat(tables, ignore_index=True)


def carrier_mean(
    values: pd.Series, empty_note: str, driver: str, reference: str = REFERENCES[""]
) -> tuple[float, str]:
    """Mean over carriers of a per-patient value, ignoring undefined ones, with the reason for NaN
    (`reference` names the state distances are measured from)."""
    finite = values.dropna()
    if not len(values):
        return np.nan, empty_note
    left_out = len(values) - len(finite)
    reason = f"z_state of the full genome equals {reference} for {left_out} carrier(s) of {driver}"
    if not len(finite):
        return np.nan, reason
    return float(finite.mean()), f"{reason}, left out" if left_out else ""


def resistance_fold_rows(patients: pd.DataFrame, fold: FoldResult, drivers: list[str]) -> list[dict]:
    """Per driver and reference state (wild type; normal tissue where the per-patient table has it):
    mean fraction, fraction over carriers with another driver, and both distances."""
    suffixes = [suffix for suffix in REFERENCES if f"distance_fraction{suffix}" in patients.columns]
    rows = []
    for driver in drivers:
        mine = patients[patients["driver"] == driver]
        others = mine[mine["n_other_drivers"] > 0]
        absent = "" if len(mine) else no_carrier_note(driver)
        alone_only = absent or f"no held-out carrier of {driver} has another driver"
        values = {}
        for suffix in suffixes:
            mean = partial(carrier_mean, driver=driver, reference=REFERENCES[suffix])
            fraction, only, full = (f"distance_{name}{suffix}" for name in ("fraction", "only", "full"))
            values |= {
                fraction: mean(mine[fraction], absent),
                f"{fraction}_with_others": mean(others[fraction], alone_only),
                only: mean(mine[only], absent),
                full: mean(mine[full], absent),
            }
        alone = int((mine["n_other_drivers"] == 0).sum())
        for quantity, (value, note) in values.items():
            rows.append(
                {
                    "driver": driver,
                    "quantity": quantity,
                    **fold.keys,
                    "value": value,
                    "n_patients": len(fold.test_rows),
                    "n_carriers": len(mine),
                    "n_carriers_alone": alone,
                    "note": note,
                }
            )
    return rows


def q4_resistance_driver(folds: list[FoldResult]) -> Answer:
    """Q4: for carriers of each driver, inhibit all other drivers and see how far z_state stays from
    the wild-type state, as a fraction of the full genome's distance (see `resistance_per_patient`).

    Quantities per driver and fold: `distance_fraction` (mean over carriers), the same over carriers
    with at least one other driver (`distance_fraction_with_others`: carriers with no other driver
    have fraction 1 by construction, and `n_carriers_alone` counts them), and the mean absolute
    distances `distance_only` and `distance_full`. Where the cohort has normal samples, the same four
    measured from the fold's normal-tissue state instead of the wild type's: `distance_fraction_normal`,
    `distance_fraction_normal_with_others`, `distance_only_normal`, `distance_full_normal` (a driver
    whose fraction stays near 1 holds the state as far from normal tissue on its own as the full
    genome does). Without normals these are absent. The summary ranks drivers per quantity (`rank`,
    1 = highest mean). The resistance driver is the one with the highest `distance_fraction_with_others`
    where `stats.separate_best` separates it from every other driver (per-carrier fractions, a
    Mann-Whitney test: drivers have different carriers; and the folds), else there is none.
    Tables: `q4_resistance_per_patient`, `q4_resistance_per_fold`, `q4_resistance_summary`,
    `q4_comparison`, `q4_verdict`.
    """
    cohort = folds[0].cohort
    patients = pd.concat([resistance_per_patient(fold) for fold in folds], ignore_index=True)
    rows = []
    for fold in folds:
        mine = (patients["fold"] == fold.fold) & (patients[SEED] == fold.training_seed)
        rows += resistance_fold_rows(patients[mine], fold, cohort.driver_names)
    per_fold = pd.DataFrame(rows, columns=RESISTANCE_COLUMNS)
    summary = summarise(per_fold, RESISTANCE_KEYS, COUNTS + ["n_carriers_alone"])
    summary["rank"] = summary.groupby("quantity")["mean"].rank(ascending=False, method="min")
    with_others = patients[patients["n_other_drivers"] > 0]
    units = with_others.rename(columns={"case_id": "unit", "distance_fraction": "value"})
    quantity = "distance_fraction_with_others"
    fraction_scores = per_fold[per_fold["quantity"] == quantity]
    separation = separate_best(fraction_scores, units, "driver", paired=False)
    verdict = verdict_table(separation, "driver", {"quantity": quantity})
    tables = {
        "q4_resistance_per_patient": patients,
        "q4_resistance_per_fold": per_fold,
        "q4_resistance_summary": summary,
        "q4_comparison": separation.table.rename(columns={"item": "driver"}),
        "q4_verdict": verdict,
    }
    return Answer(tables, {"q4_verdict": verdict.loc[0, "sentence"]})
