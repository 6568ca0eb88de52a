"""Q1 gene knockout: every driver set to 0 in its held-out carriers, through each fold's trained model
(genomics-only path); which layer and which driver it moves most, its effects per feature, its effects
against known biology, and whether the held-out carriers support each effect (see `lpmlib.questions.shifts`
for the per-fold tables).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from lpmlib.cv import FoldResult
from lpmlib.manifest import KnownEffect
from lpmlib.perturb import Z_STATE, DriverEdit, edit_drivers, observed_held_out
from lpmlib.questions import Answer, verdict_table
from lpmlib.questions.shifts import (
    SUMMARY_KEYS,
    carrier_difference,
    per_fold_table,
    quantity_scores,
    shift,
    shift_units,
    storm_units,
    summarise,
)
from lpmlib.stats import ALPHA, gain_tests, seed_means, separate_best, squared_errors

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
    "observed_agrees",
    "n_folds_selected",
    "effect",
    "reversed",
    "rank",
    "n_ranked",
    "top_fraction",
    "note",
]

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


def held_out_effect_units(folds: list[FoldResult], edits: list[dict[str, DriverEdit]]) -> pd.DataFrame:
    """Per driver, layer and held-out carrier (`unit`): the carrier's squared error (summed over the layer's
    features) of the genomics-only prediction with the driver knocked out, minus that with its own genome
    (`value`), beside the latter (`error_own`). Positive where the driver's predicted effect brings the
    prediction closer to what was observed in the carrier."""
    cohort = folds[0].cohort
    layers = cohort.target_names + cohort.ptm_names
    frames = []
    for fold, fold_edits in zip(folds, edits):
        observed = {layer: observed_held_out(fold, layer) for layer in layers}
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


def feature_shift(
    fold: FoldResult, edit: DriverEdit, layer: str
) -> tuple[pd.Series | None, pd.Series | None]:
    """One fold's knockout shift and observed carrier minus non-carrier difference of `layer`, per
    feature (None when undefined): PC scores are mapped to z-scored features through the fold's
    loadings; a layer without loadings is already in features. Folds of a raw cohort may select
    different features."""
    view = fold.cohort.layers[layer]
    values, loadings = view.values, view.loadings
    matrix = None if loadings is None else loadings.loc[list(values.columns)].to_numpy(dtype=float)
    to_features = lambda v: v if matrix is None else v @ matrix  # noqa: E731
    names = values.columns if loadings is None else loadings.columns
    effect = to_features(shift(edit, layer).mean(axis=0)) if edit.n_carriers else None
    difference = carrier_difference(observed_held_out(fold, layer), edit)
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
    cohort = folds[0].cohort
    tables = []
    n_carriers = sum(edit[gene].n_carriers for fold, edit in zip(folds, edits) if fold.training_seed == 1)
    n_folds = len({fold.fold for fold, edit in zip(folds, edits) if edit[gene].n_carriers})
    for layer in cohort.target_names + cohort.ptm_names:
        pairs = [feature_shift(fold, edit[gene], layer) for fold, edit in zip(folds, edits)]
        effects = [e for e, _ in pairs if e is not None]
        differences = [d for (_, d), fold in zip(pairs, folds) if d is not None and fold.training_seed == 1]
        tables.append(top_feature_rows(gene, layer, effects, differences, n_folds, n_carriers, top_features))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=FEATURE_COLUMNS)


def feature_ranks(folds: list[FoldResult], gene: str, layer: str, features: list[str]) -> pd.DataFrame:
    """Where named features stand in Q1's knockout of `gene` on `layer`: `effect`,
    `observed_difference` (see `feature_effects`), `rank` by |effect| among all the layer's features
    (1 = largest) and `n_ranked`, the features ranked. For checks against known biology, such as a
    mutated gene's own protein moving against its mutant-vs-wild-type difference."""
    edits = [edit_drivers(fold, "knockout", [gene]) for fold in folds]
    table = feature_effects(folds, edits, gene, top_features=sys.maxsize)
    table = table[table["layer"] == layer].assign(n_ranked=lambda t: len(t))
    return table[table["feature"].isin(features)].reset_index(drop=True)


def known_effect_check(folds: list[FoldResult], known: list[KnownEffect]) -> pd.DataFrame:
    """Q1 against known biology. For each known effect: `observed_difference`, the training carriers'
    minus known non-carriers' mean of the feature's preprocessed values before projection (in its own
    units, mean over folds), and `observed_agrees`, whether its sign is the one the effect states; the
    reversal's mean `effect` on the feature (see `feature_effects`), whether it moves the feature back
    (`reversed`: against the direction it is `altered` in carriers), and its `rank` by |effect| among the
    `n_ranked` features of its layer (`top_fraction` = rank / n_ranked). A feature that a fold did not
    select is named in `note` with the reason and its missing fraction."""
    rows = []
    for item in known:
        row = {"driver": item.driver, "layer": item.layer, "feature": item.feature, "altered": item.altered}
        sign = 1.0 if item.altered == "higher" else -1.0
        difference, n_selected, reason = training_difference(folds, item)
        row |= {"observed_difference": difference, "observed_agrees": bool(np.sign(difference) == sign)}
        row |= {"n_folds_selected": n_selected}
        found = feature_ranks(folds, item.driver, item.layer, [item.feature])
        if found.empty:
            rows.append(row | {"note": reason or "no fold has carriers"})
            continue
        ranked = found.iloc[0]
        notes = [ranked["note"] or "", f"not selected in some folds: {reason}" if reason else ""]
        rows.append(
            row
            | {
                "effect": ranked["effect"],
                "reversed": bool(np.sign(ranked["effect"]) == -sign),
                "rank": int(ranked["rank"]),
                "n_ranked": int(ranked["n_ranked"]),
                "top_fraction": ranked["rank"] / ranked["n_ranked"],
                "note": "; ".join(n for n in notes if n),
            }
        )
    return pd.DataFrame(rows, columns=KNOWN_COLUMNS)


def training_difference(folds: list[FoldResult], item: KnownEffect) -> tuple[float, int, str]:
    """The mean over folds of the training carriers' minus known non-carriers' mean of the feature's
    unprojected values, the folds that selected it, and why the others did not (first reason)."""
    differences, reasons = [], []
    views = [fold for fold in folds if fold.training_seed == 1]
    for fold in views:
        cohort, train = fold.cohort, fold.train_rows
        layer = cohort.layers[item.layer]
        if layer.features is None:
            reasons.append("the layer has no values before projection (a model-ready layer)")
            continue
        if item.feature not in layer.features.columns:
            reasons.append(layer.pipeline.why_not_selected(item.feature))
            continue
        carriers = cohort.drivers[item.driver].to_numpy()[train] == 1
        others = cohort.non_carriers(item.driver)[train]
        values = layer.features[item.feature].to_numpy()[train]
        if carriers.any() and others.any():
            differences.append(values[carriers].mean() - values[others].mean())
    reason = f"{reasons[0]} ({len(reasons)} of {len(views)} folds)" if reasons else ""
    return (float(np.mean(differences)) if differences else np.nan), len(views) - len(reasons), reason


def q1_gene_knockout(folds: list[FoldResult], gene: str = "FOXA1", top_features: int = 20) -> Answer:
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
    cohort = folds[0].cohort
    cohort.driver(gene)
    edits = [edit_drivers(fold, "knockout") for fold in folds]
    per_fold = per_fold_table(folds, edits)
    layers = cohort.target_names + cohort.ptm_names
    gene_rows = per_fold[per_fold["driver"] == gene]
    layer_scores = quantity_scores(gene_rows, "layer", "shift_standardised")
    layer_units = shift_units(folds, edits, gene, layers)
    by_layer = separate_best(layer_scores, layer_units, "layer", paired=True)
    storm_scores = quantity_scores(per_fold, "driver", "storm_intensity", Z_STATE)
    by_driver = separate_best(storm_scores, storm_units(folds, edits), "driver", paired=False)
    summary = summarise(per_fold, SUMMARY_KEYS)
    effect_test = held_out_effect_test(held_out_effect_units(folds, edits))
    tables = {
        "q1_effect_test": effect_test,
        "q1_knockout_per_fold": per_fold,
        "q1_knockout_summary": summary,
        "q1_feature_effects": feature_effects(folds, edits, gene, top_features),
        "q1_layer_verdict": verdict_table(by_layer, "layer", {"driver": gene}),
        "q1_storm_verdict": verdict_table(by_driver, "driver", {"quantity": "storm_intensity"}),
        "q1_storm_comparison": by_driver.table.rename(columns={"item": "driver"}),
    }
    headline = {
        "q1_gene": gene,
        "q1_n_carriers": int(gene_layer_shifts(summary, gene)["n_carriers"].max()),
        "q1_layer_verdict": tables["q1_layer_verdict"].loc[0, "sentence"],
        "q1_storm_verdict": tables["q1_storm_verdict"].loc[0, "sentence"],
        "q1_effect_test": effect_test_sentence(effect_test),
    }
    return Answer(tables, headline)


def gene_layer_shifts(summary: pd.DataFrame, gene: str) -> pd.DataFrame:
    """The rows of Q1's summary that say how far the knockout of `gene` moves each layer, on the common
    scale (`shift_standardised`)."""
    return summary[(summary["driver"] == gene) & (summary["quantity"] == "shift_standardised")]
