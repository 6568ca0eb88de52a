"""Q1 gene knockout, Q2 fusion deletion and Q4 resistance driver: edits of the genome run through
each fold's trained model (genomics-only path) on all of its held-out patients, then summarised
across folds.

Per-fold tables are long: one row per driver, layer (or `z_state`), quantity and fold, with the
value, the held-out patients `n_patients` and carriers `n_carriers` it rests on, and a `note` that
is empty or says why the value is NaN. Summary tables hold the mean, 95% t-interval, number of
finite folds and per-fold values (`stats.summarise_folds`), plus the patients and carriers summed
over folds (each patient is held out once, so these are cohort totals).
"""

from __future__ import annotations

import sys
from functools import partial

import numpy as np
import pandas as pd

from lpmlib.cohort import Cohort
from lpmlib.cv import FoldResult, fold_view
from lpmlib.manifest import KnownEffect
from lpmlib.perturb import Z_STATE, DriverEdit, edit_drivers, normal_state, observed_held_out
from lpmlib.questions import Answer, verdict_table
from lpmlib.stats import (
    ALPHA,
    SEED,
    gain_tests,
    mean_rms,
    one_seed,
    seed_means,
    separate_best,
    squared_errors,
    summarise_folds,
)

PER_FOLD_COLUMNS = ["driver", "layer", "quantity", "fold", SEED, "value", "n_patients", "n_carriers", "note"]
SUMMARY_KEYS = ["driver", "layer", "quantity"]
COUNTS = ["n_patients", "n_carriers"]
FEATURE_COLUMNS = [
    "driver",
    "layer",
    "feature",
    "effect",
    "observed_difference",
    "rank",
    "n_folds",
    "n_carriers",
    "note",
]
KNOWN_COLUMNS = [
    "driver",
    "layer",
    "feature",
    "altered",
    "observed_difference",
    "effect",
    "reversed",
    "rank",
    "n_ranked",
    "top_fraction",
    "note",
]
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


# ---------------------------------------------------------------------------------------------
# Small measures, NaN (never 0) when there is nothing to measure


def no_carrier_note(driver: str) -> str:
    return f"no carrier of {driver} in this fold's held-out patients"


def mean_norm(change: np.ndarray) -> float:
    """Mean over rows of the L2 norm of each row; NaN without rows."""
    return float(np.linalg.norm(change, axis=1).mean()) if len(change) else np.nan


def residual_spread(cohort: Cohort, fold: FoldResult, layer: str) -> float:
    """RMS over held-out patients and features of observed minus the genomics-only prediction."""
    residual = observed_held_out(cohort, fold, layer) - fold.predictions["genomics_only"][layer]
    return float(np.sqrt(np.mean(residual**2)))


def carrier_difference(values: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """Mean of the carrier rows minus mean of the others; None when either group is empty."""
    carriers = np.zeros(len(values), dtype=bool)
    carriers[rows] = True
    if carriers.all() or not carriers.any():
        return None
    return values[carriers].mean(axis=0) - values[~carriers].mean(axis=0)


def shift(edit: DriverEdit, layer: str) -> np.ndarray:
    """Edited minus baseline output of every carrier: (n_carriers, dim)."""
    return edit.edited[layer] - edit.baseline[layer]


def shift_units(
    cohort: Cohort,
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
            spread = residual_spread(cohort, fold, layer)
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
# Q1: knockout of every driver


EFFECT_TEST_COLUMNS = [
    "driver",
    "layer",
    "n_carriers",
    "mean_gain",
    "fraction_of_error",
    "gain_p_value",
    "gain_p_adjusted",
    "supported",
]


def held_out_effect_units(
    cohort: Cohort, folds: list[FoldResult], edits: list[dict[str, DriverEdit]]
) -> pd.DataFrame:
    """Per driver, layer and held-out carrier (`unit`): the carrier's squared error (summed over the layer's
    features) of the genomics-only prediction with the driver knocked out, minus that with its own genome
    (`value`), beside the latter (`error_own`). Positive where the driver's predicted effect brings the
    prediction closer to what was observed in the carrier."""
    layers = cohort.target_names + cohort.ptm_names
    frames = []
    for fold, fold_edits in zip(folds, edits):
        observed = {layer: observed_held_out(cohort, fold, layer) for layer in layers}
        for driver, edit in fold_edits.items():
            for layer in layers:
                own = squared_errors(observed[layer][edit.rows], edit.baseline[layer])
                knocked_out = squared_errors(observed[layer][edit.rows], edit.edited[layer])
                frames.append(
                    pd.DataFrame(
                        {
                            "driver": driver,
                            "layer": layer,
                            **fold.keys,
                            "unit": fold.test_rows[edit.rows],
                            "value": knocked_out - own,
                            "error_own": own,
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def held_out_effect_test(units: pd.DataFrame) -> pd.DataFrame:
    """Per driver and layer: whether the held-out carriers support the knockout's predicted effect, a null
    that needs no retraining.

    The gain of keeping the driver's predicted effect (`held_out_effect_units`) is tested over the held-out
    carriers of every fold (each carrier's gain the mean of its fold's models) by a one-sided Wilcoxon
    signed-rank test that it is positive, Benjamini-Hochberg-adjusted over every driver and layer. If the
    predicted effect were noise fitted in training, removing it would bring the prediction closer to the
    carriers' values on average (the expected gain is then minus its squared size), so a supported effect
    points the way the held-out data do, and is at most twice as large as the effect they carry.
    `fraction_of_error`: the mean gain over the carriers' mean squared error with their own genome.
    """
    keys = ["driver", "layer"]
    carriers = seed_means(units, [*keys, "fold", "unit"])
    own = seed_means(units, [*keys, "fold", "unit"], "error_own")
    table = carriers.groupby(keys, sort=False).agg(n_carriers=("value", "size"), mean_gain=("value", "mean"))
    table["fraction_of_error"] = table["mean_gain"] / own.groupby(keys, sort=False)["error_own"].mean()
    table = table.reset_index().merge(gain_tests(units, keys, alternative="greater"), on=keys, how="left")
    table["supported"] = table["gain_p_adjusted"] < ALPHA
    return table.reindex(columns=EFFECT_TEST_COLUMNS)


def effect_test_matrix(test: pd.DataFrame) -> pd.DataFrame:
    """Drivers (most held-out carriers first) x layers: the adjusted p-value of each effect's test."""
    order = test.groupby("driver", sort=False)["n_carriers"].max().sort_values(ascending=False, kind="stable")
    matrix = test.pivot(index="driver", columns="layer", values="gain_p_adjusted")
    return matrix.reindex(index=order.index, columns=list(dict.fromkeys(test["layer"])))


def effect_test_sentence(test: pd.DataFrame) -> str:
    """How many driver-layer effects the held-out carriers support, in words."""
    tested = test.dropna(subset=["gain_p_value"])
    untested = len(test) - len(tested)
    sentence = (
        f"The held-out carriers support {int(tested['supported'].sum())} of the {len(tested)} predicted "
        f"knockout effects that could be tested (drivers x layers; one-sided Wilcoxon signed-rank test, "
        f"BH-adjusted p < {ALPHA})"
    )
    return sentence + (f"; {untested} had fewer than two held-out carriers." if untested else ".")


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
    difference = carrier_difference(observed, edit.rows)
    if difference is None:
        everyone = f"every held-out patient carries {driver}: no non-carrier to compare"
        observed_rms = (np.nan, absent or everyone)
    else:
        observed_rms = (float(np.sqrt(np.mean(difference**2))), "")
    return {
        "shift_rms": (rms, absent),
        "shift_standardised": standardised,
        "observed_difference_rms": observed_rms,
    }


def knockout_fold_rows(cohort: Cohort, fold: FoldResult, edits: dict[str, DriverEdit]) -> list[dict]:
    """The per-fold rows of the knockouts in `edits` (one batched edit of this fold)."""
    layers = cohort.target_names + cohort.ptm_names
    spread = {layer: residual_spread(cohort, fold, layer) for layer in layers}
    observed = {layer: observed_held_out(cohort, fold, layer) for layer in layers}
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


def per_fold_table(
    cohort: Cohort, folds: list[FoldResult], edits: list[dict[str, DriverEdit]]
) -> pd.DataFrame:
    """Q1's per-fold rows of knockouts already run, one dict of edits per fold."""
    rows = [row for fold, edit in zip(folds, edits) for row in knockout_fold_rows(cohort, fold, edit)]
    return pd.DataFrame(rows, columns=PER_FOLD_COLUMNS)


def knockout_per_fold(
    cohort: Cohort, folds: list[FoldResult], drivers: list[str] | None = None
) -> pd.DataFrame:
    """Q1's per-fold table for `drivers` (default all), one batched knockout per fold.

    Quantities: `storm_intensity` (layer `z_state`): mean over carriers of the L2 norm of the
    z_state shift (model units); per target and PTM layer, `shift_rms`: mean over carriers of the
    RMS over features of the predicted shift (original units, PC scores); `shift_standardised`:
    shift_rms over the fold's held-out residual spread of the layer (RMS over patients and features
    of observed minus genomics-only prediction); `observed_difference_rms`: RMS over features of the
    held-out carriers' mean minus the non-carriers' mean of the observed layer. A shift is
    knocked-out minus factual.
    """
    return per_fold_table(cohort, folds, [edit_drivers(cohort, fold, "knockout", drivers) for fold in folds])


def summarise(per_fold: pd.DataFrame, by: list[str], counts: list[str] = COUNTS) -> pd.DataFrame:
    """`stats.summarise_folds` plus the patients and carriers summed over folds."""
    totals = one_seed(per_fold).groupby(by, sort=False)[counts].sum().reset_index()
    return summarise_folds(per_fold, by=by).merge(totals, on=by, how="left")


def feature_shift(
    cohort: Cohort, fold: FoldResult, edit: DriverEdit, layer: str
) -> tuple[pd.Series | None, pd.Series | None]:
    """One fold's knockout shift and observed carrier minus non-carrier difference of `layer`, per
    feature (None when undefined): PC scores are mapped to z-scored features through the fold's
    loadings; a layer without loadings is already in features. Folds of a raw cohort may select
    different features."""
    view = fold_view(cohort, fold).layers[layer]
    values, loadings = view.values, view.loadings
    matrix = None if loadings is None else loadings.loc[list(values.columns)].to_numpy(dtype=float)
    to_features = lambda v: v if matrix is None else v @ matrix  # noqa: E731
    names = values.columns if loadings is None else loadings.columns
    effect = to_features(shift(edit, layer).mean(axis=0)) if edit.n_carriers else None
    difference = carrier_difference(observed_held_out(cohort, fold, layer), edit.rows)
    as_series = lambda v: None if v is None else pd.Series(v, index=names)  # noqa: E731
    return as_series(effect), as_series(None if difference is None else to_features(difference))


def top_feature_rows(
    gene: str, layer: str, effects: list, differences: list, n_folds: int, n_carriers: int, top_features: int
) -> pd.DataFrame:
    """The `top_features` features of a layer by |mean effect over folds|, or one NaN row with its reason."""
    if not effects:
        note = f"no carrier of {gene} in any fold's held-out patients"
        return pd.DataFrame(
            [
                {
                    "driver": gene,
                    "layer": layer,
                    "feature": None,
                    "effect": np.nan,
                    "observed_difference": np.nan,
                    "rank": np.nan,
                    "n_folds": 0,
                    "n_carriers": n_carriers,
                    "note": note,
                }
            ],
            columns=FEATURE_COLUMNS,
        )
    mean_effect = pd.concat(effects, axis=1).mean(axis=1)  # aligned by feature name across folds
    features = mean_effect.index
    effect = mean_effect.to_numpy()
    observed = (
        pd.concat(differences, axis=1).mean(axis=1).reindex(features).to_numpy()
        if differences
        else np.full_like(effect, np.nan)
    )
    note = "" if differences else f"no fold has both carriers and non-carriers of {gene}"
    order = np.argsort(-np.abs(effect), kind="stable")[:top_features]
    return pd.DataFrame(
        {
            "driver": gene,
            "layer": layer,
            "feature": features[order],
            "effect": effect[order],
            "observed_difference": observed[order],
            "rank": np.arange(1, len(order) + 1),
            "n_folds": n_folds,
            "n_carriers": n_carriers,
            "note": note,
        },
        columns=FEATURE_COLUMNS,
    )


def feature_effects(
    cohort: Cohort,
    folds: list[FoldResult],
    edits: list[dict[str, DriverEdit]],
    gene: str,
    top_features: int = 20,
) -> pd.DataFrame:
    """Q1's per-feature effects of knocking out `gene`, for every layer.

    `effect`: the mean over folds of the carriers' mean knockout shift (knocked-out minus factual) of
    the z-scored features (PC-score shift @ loadings); `observed_difference`: the mean over folds of
    the held-out carriers' minus non-carriers' mean, mapped the same way. A model that captures the
    driver's effect gives `effect` close to minus `observed_difference` (which also carries the
    effects of co-occurring drivers). `n_folds`: folds with carriers. With several models per fold, the
    mean is over every model (each fold has as many).
    """
    tables = []
    n_carriers = sum(edit[gene].n_carriers for fold, edit in zip(folds, edits) if fold.training_seed == 1)
    n_folds = len({fold.fold for fold, edit in zip(folds, edits) if edit[gene].n_carriers})
    for layer in cohort.target_names + cohort.ptm_names:
        pairs = [feature_shift(cohort, fold, edit[gene], layer) for fold, edit in zip(folds, edits)]
        effects = [e for e, _ in pairs if e is not None]
        differences = [d for (_, d), fold in zip(pairs, folds) if d is not None and fold.training_seed == 1]
        tables.append(top_feature_rows(gene, layer, effects, differences, n_folds, n_carriers, top_features))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=FEATURE_COLUMNS)


def feature_ranks(
    cohort: Cohort, folds: list[FoldResult], gene: str, layer: str, features: list[str]
) -> pd.DataFrame:
    """Where named features stand in Q1's knockout of `gene` on `layer`: `effect`,
    `observed_difference` (see `feature_effects`), `rank` by |effect| among all the layer's features
    (1 = largest) and `n_ranked`, the features ranked. For checks against known biology, such as a
    mutated gene's own protein moving against its mutant-vs-wild-type difference."""
    edits = [edit_drivers(cohort, fold, "knockout", [gene]) for fold in folds]
    table = feature_effects(cohort, folds, edits, gene, top_features=sys.maxsize)
    table = table[table["layer"] == layer].assign(n_ranked=lambda t: len(t))
    return table[table["feature"].isin(features)].reset_index(drop=True)


def known_effect_check(cohort: Cohort, folds: list[FoldResult], known: list[KnownEffect]) -> pd.DataFrame:
    """Q1 against known biology: for each known effect, the reversal's mean `effect` on the feature and
    its `observed_difference` (see `feature_effects`), whether the reversal moves the feature back
    (`reversed`: against the direction it is `altered` in carriers), and its `rank` by |effect| among
    the `n_ranked` features of its layer (`top_fraction` = rank / n_ranked)."""
    rows = []
    for item in known:
        found = feature_ranks(cohort, folds, item.driver, item.layer, [item.feature])
        row = {"driver": item.driver, "layer": item.layer, "feature": item.feature, "altered": item.altered}
        if found.empty:
            rows.append(row | {"note": "no fold selected this feature, or no fold has carriers"})
            continue
        ranked = found.iloc[0]
        sign = 1.0 if item.altered == "higher" else -1.0
        rows.append(
            row
            | {
                "observed_difference": ranked["observed_difference"],
                "effect": ranked["effect"],
                "reversed": bool(np.sign(ranked["effect"]) == -sign),
                "rank": int(ranked["rank"]),
                "n_ranked": int(ranked["n_ranked"]),
                "top_fraction": ranked["rank"] / ranked["n_ranked"],
                "note": ranked["note"] or "",
            }
        )
    return pd.DataFrame(rows, columns=KNOWN_COLUMNS)


def q1_gene_knockout(
    cohort: Cohort, folds: list[FoldResult], gene: str = "FOXA1", top_features: int = 20
) -> Answer:
    """Q1: knock out every driver in its held-out carriers (one batched pass per fold).

    Tables: `q1_knockout_per_fold` (see `knockout_per_fold`), `q1_knockout_summary` (per driver,
    layer and quantity across folds), `q1_feature_effects` for `gene` (see `feature_effects`), and the
    verdicts (`stats.separate_best`): `q1_layer_verdict`, which layer the knockout of `gene` moves most
    (per-carrier standardised shifts, paired across layers), `q1_storm_verdict` and
    `q1_storm_comparison`, which driver's knockout moves z_state most (per-carrier shifts, unpaired:
    drivers have different carriers); and `q1_effect_test`, whether the held-out carriers support each
    driver's predicted effect on each layer (`held_out_effect_test`, a null without retraining). An unknown
    `gene` raises UnknownDriverError listing the valid names.
    """
    cohort.driver(gene)
    edits = [edit_drivers(cohort, fold, "knockout") for fold in folds]
    per_fold = per_fold_table(cohort, folds, edits)
    layers = cohort.target_names + cohort.ptm_names
    gene_rows = per_fold[per_fold["driver"] == gene]
    layer_scores = quantity_scores(gene_rows, "layer", "shift_standardised")
    layer_units = shift_units(cohort, folds, edits, gene, layers)
    by_layer = separate_best(layer_scores, layer_units, "layer", paired=True)
    storm_scores = quantity_scores(per_fold, "driver", "storm_intensity", Z_STATE)
    by_driver = separate_best(storm_scores, storm_units(folds, edits), "driver", paired=False)
    return Answer(
        {
            "q1_effect_test": held_out_effect_test(held_out_effect_units(cohort, folds, edits)),
            "q1_knockout_per_fold": per_fold,
            "q1_knockout_summary": summarise(per_fold, SUMMARY_KEYS),
            "q1_feature_effects": feature_effects(cohort, folds, edits, gene, top_features),
            "q1_layer_verdict": verdict_table(by_layer, "layer", {"driver": gene}),
            "q1_storm_verdict": verdict_table(by_driver, "driver", {"quantity": "storm_intensity"}),
            "q1_storm_comparison": by_driver.table.rename(columns={"item": "driver"}),
        }
    )


# ---------------------------------------------------------------------------------------------
# Q2: which PTM layer a fusion drives most


def top_layer_counts(per_fold: pd.DataFrame) -> pd.Series:
    """Number of folds in which each layer has the highest finite value (the mean of the fold's models)."""
    per_fold = seed_means(per_fold, ["layer", "fold"])
    finite = per_fold[np.isfinite(per_fold["value"].to_numpy(dtype=float))]
    winners = finite.loc[finite.groupby("fold")["value"].idxmax(), "layer"]
    return winners.value_counts().reindex(per_fold["layer"].unique(), fill_value=0)


def q2_fusion_deletion(cohort: Cohort, folds: list[FoldResult], gene: str = "ERG") -> Answer:
    """Q2: the knockout of `gene` per PTM layer on a common scale (`shift_standardised`).

    Tables: `q2_ptm_per_fold` and `q2_ptm_summary` (with `rank`, 1 = highest mean, and `n_folds_top`,
    the folds in which the layer has the largest shift); `q2_comparison`: the layer with the highest
    mean against each other PTM layer (`stats.separate_best`: per-carrier shifts, a paired Wilcoxon test
    and the folds); `q2_verdict`: the PTM layer the deletion moves most, where the comparison separates
    it, else none and the layers that cannot be separated.
    """
    cohort.driver(gene)
    edits = [edit_drivers(cohort, fold, "knockout", [gene]) for fold in folds]
    table = per_fold_table(cohort, folds, edits)
    per_fold = table[table["layer"].isin(cohort.ptm_names) & (table["quantity"] == "shift_standardised")]
    per_fold = per_fold.reset_index(drop=True)
    summary = summarise(per_fold, SUMMARY_KEYS)
    summary["rank"] = summary["mean"].rank(ascending=False, method="min")
    summary["n_folds_top"] = summary["layer"].map(top_layer_counts(per_fold)).astype(int)
    units = shift_units(cohort, folds, edits, gene, cohort.ptm_names)
    separation = separate_best(per_fold, units, "layer", paired=True)
    return Answer(
        {
            "q2_ptm_per_fold": per_fold,
            "q2_ptm_summary": summary,
            "q2_comparison": separation.table.rename(columns={"item": "layer"}),
            "q2_verdict": verdict_table(separation, "PTM layer", {"driver": gene}),
        }
    )


# ---------------------------------------------------------------------------------------------
# Q4: which driver keeps the state away from wild type when the others are inhibited


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


def resistance_per_patient(cohort: Cohort, fold: FoldResult) -> pd.DataFrame:
    """Per held-out carrier of each driver: distances of z_state from the wild-type z_state.

    `distance_only` = ||z(only this driver) - z(wild type)||, `distance_full` = ||z(own genome) -
    z(wild type)||, `distance_fraction` = their ratio (NaN when the full genome's z_state equals the
    wild type's). A carrier with no other driver has the same genome under `only`, so its z(only) is
    taken to be z(full) and its fraction is exactly 1 by construction. Two batched passes per fold.
    Where the cohort has normal samples, `distance_only_normal`, `distance_full_normal` and
    `distance_fraction_normal` measure the same from the fold's normal-tissue state (`normal_state`).
    """
    only = edit_drivers(cohort, fold, "only")
    wild = edit_drivers(cohort, fold, "wild_type")
    z_normal = normal_state(cohort, fold)
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


def q4_resistance_driver(cohort: Cohort, folds: list[FoldResult]) -> Answer:
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
    patients = pd.concat([resistance_per_patient(cohort, fold) for fold in folds], ignore_index=True)
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
    return Answer(
        {
            "q4_resistance_per_patient": patients,
            "q4_resistance_per_fold": per_fold,
            "q4_resistance_summary": summary,
            "q4_comparison": separation.table.rename(columns={"item": "driver"}),
            "q4_verdict": verdict_table(separation, "driver", {"quantity": quantity}),
        }
    )
