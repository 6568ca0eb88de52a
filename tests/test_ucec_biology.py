"""Known biology of the CPTAC UCEC cohort (../shared/data/README.md), reproduced in silico.

The manifest lists each alteration's own protein and whether it is higher or lower in altered
tumours. Reversing the alteration (mutant -> wild type, in held-out carriers, on the genomics-only
path) must move the protein back, against its mutant-vs-wild-type difference, and rank it in the top
10% of proteins by effect size. The model is trained with the default settings of the book (5 folds,
seed 42).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_manifest import UCEC

from lpmlib.cv import run_cv
from lpmlib.manifest import read_manifest
from lpmlib.questions.knockout import known_effect_check

PROJECT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "ARID1A": "ARID1A",
    "CTNNB1": "CTNNB1",
    "TP53": "TP53",
    "MSI-H": "MLH1",
}  # the data README's table


@pytest.fixture(scope="module")
def reversals(tmp_path_factory) -> pd.DataFrame:
    if not UCEC.is_dir():
        pytest.skip(f"the public CPTAC UCEC data are not at {UCEC}")
    cohort = read_manifest(PROJECT / "examples/ucec.yaml", UCEC)
    folds = run_cv(cohort, tmp_path_factory.mktemp("ucec"), log=None)
    return known_effect_check(folds, cohort.known_effects).set_index("driver")


@pytest.mark.slow
def test_the_manifest_lists_the_known_effects_of_the_data_readme(reversals) -> None:
    assert reversals["feature"].to_dict() == EXPECTED and set(reversals["layer"]) == {"protein"}


@pytest.mark.slow
@pytest.mark.parametrize("alteration", EXPECTED)
def test_reversing_an_alteration_moves_its_protein_back_and_near_the_top(reversals, alteration) -> None:
    row = reversals.loc[alteration]
    altered = 1 if row["altered"] == "higher" else -1
    assert np.sign(row["observed_difference"]) == altered  # held-out carriers minus the other tumours
    assert row["reversed"] and np.sign(row["effect"]) == -altered, row.to_dict()
    assert row["top_fraction"] <= 0.10 and row["n_ranked"] > 5000, row.to_dict()
