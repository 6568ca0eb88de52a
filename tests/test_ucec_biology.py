"""Known biology of the CPTAC UCEC cohort (../shared/data/README.md), reproduced in silico.

Reversing an alteration (mutant -> wild type, in held-out carriers, on the genomics-only path) must
move the gene's own protein against its mutant-vs-wild-type difference, and rank it in the top 10% of
proteins by effect size. The model is trained with the default settings of the book (5 folds, seed 42).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_manifest import UCEC

from lpmlib.cv import run_cv
from lpmlib.manifest import read_manifest
from lpmlib.questions.knockout import feature_ranks

PROJECT = Path(__file__).resolve().parents[1]
KNOWN = [  # alteration, its protein, the direction of the protein in altered tumours (data README)
    ("ARID1A", "ARID1A", -1),
    ("CTNNB1", "CTNNB1", +1),
    ("TP53", "TP53", +1),
    ("MSI-H", "MLH1", -1),
]


@pytest.fixture(scope="module")
def reversals(tmp_path_factory) -> pd.DataFrame:
    if not UCEC.is_dir():
        pytest.skip(f"the public CPTAC UCEC data are not at {UCEC}")
    folds = run_cv(read_manifest(PROJECT / "examples/ucec.yaml", UCEC), tmp_path_factory.mktemp("ucec"), log=None)
    cohort = folds[0].cohort
    return pd.concat([feature_ranks(cohort, folds, alteration, "protein", [protein]).assign(altered_direction=sign)
                      for alteration, protein, sign in KNOWN], ignore_index=True)  # fmt: skip


@pytest.mark.parametrize(("alteration", "protein"), [(a, p) for a, p, _ in KNOWN])
def test_reversing_an_alteration_moves_its_protein_back_and_near_the_top(reversals, alteration, protein) -> None:
    row = reversals.set_index("driver").loc[alteration]
    assert row["feature"] == protein and row["n_folds"] == 5
    assert np.sign(row["observed_difference"]) == np.sign(row["altered_direction"])  # held-out carriers - others
    assert np.sign(row["effect"]) == -np.sign(row["altered_direction"]), row.to_dict()
    assert row["rank"] <= 0.10 * row["n_ranked"], row.to_dict()
