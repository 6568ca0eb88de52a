"""Q2 fusion deletion: which PTM layer the knockout of a fusion (or any driver) moves most, on a common
scale (shifts over each layer's held-out residual spread)."""

from __future__ import annotations

from lpmlib.cv import FoldResult
from lpmlib.perturb import edit_drivers
from lpmlib.questions import Answer, verdict_table
from lpmlib.questions.shifts import SUMMARY_KEYS, per_fold_table, shift_units, summarise
from lpmlib.stats import separate_best, top_counts


def q2_fusion_deletion(folds: list[FoldResult], gene: str = "ERG") -> Answer:
    """Q2: the knockout of `gene` per PTM layer on a common scale (`shift_standardised`).

    Tables: `q2_ptm_per_fold` and `q2_ptm_summary` (with `rank`, 1 = highest mean, and `n_folds_top`,
    the folds in which the layer has the largest shift); `q2_comparison`: the layer with the highest
    mean against each other PTM layer (`stats.separate_best`: per-carrier shifts, a paired Wilcoxon test
    and the folds); `q2_verdict`: the PTM layer the deletion moves most, where the comparison separates
    it, else none and the layers that cannot be separated.
    """
    cohort = folds[0].cohort
    cohort.driver(gene)
    edits = [edit_drivers(fold, "knockout", [gene]) for fold in folds]
    table = per_fold_table(folds, edits)
    per_fold = table[table["layer"].isin(cohort.ptm_names) & (table["quantity"] == "shift_standardised")]
    per_fold = per_fold.reset_index(drop=True)
    summary = summarise(per_fold, SUMMARY_KEYS)
    summary["rank"] = summary["mean"].rank(ascending=False, method="min")
    summary["n_folds_top"] = summary["layer"].map(top_counts(per_fold, "layer")).astype(int)
    units = shift_units(folds, edits, gene, cohort.ptm_names)
    separation = separate_best(per_fold, units, "layer", paired=True)
    verdict = verdict_table(separation, "PTM layer", {"driver": gene})
    tables = {
        "q2_ptm_per_fold": per_fold,
        "q2_ptm_summary": summary,
        "q2_comparison": separation.table.rename(columns={"item": "layer"}),
        "q2_verdict": verdict,
    }
    return Answer(tables, {"q2_gene": gene, "q2_verdict": verdict.loc[0, "sentence"]})
