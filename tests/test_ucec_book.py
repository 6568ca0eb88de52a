"""The book on a real cohort: the CPTAC UCEC manifest with quick settings, as a user runs it.

In a file of its own so that it runs beside the simulated book when the tests run in parallel.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_end_to_end import UCEC, copy_project, lpm_run

from lpmlib.runner import read_glued


@pytest.mark.slow
@pytest.mark.skipif(not UCEC.is_dir(), reason=f"the public CPTAC UCEC data are not at {UCEC}")
def test_the_ucec_book_builds_from_its_manifest_with_quick_settings(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    lpm_run(project, "-p", f"raw_data_dir={UCEC}", params="params/ucec-quick.yaml")
    run, pages = project / "results/ucec-quick", project / "_build/html/book/_generated"
    built = sorted(page.stem for page in pages.glob("*.html"))
    assert len(built) == 10 and "10_validation" not in built  # no planted truth: no validation chapter
    glued = read_glued(run / "notebooks/01_data_assembly.ipynb")
    assert glued["n_patients"] == "90" and "UCEC" in glued["cohort_description"]
    assert read_glued(run / "notebooks/09_q6_storm_leader.ipynb")["q6_endpoint"] == "'protein'"
    effects = pd.read_csv(run / "tables/q1_feature_effects.csv")
    assert set(effects["driver"]) == {"ARID1A"} and set(effects["layer"]) == {
        "protein",
        "miRNA",
        "phospho",
        "acetyl",
    }
    known = pd.read_csv(run / "tables/q1_known_effects.csv")
    assert list(known["feature"]) == ["ARID1A", "CTNNB1", "TP53", "MLH1"] and known["rank"].notna().all()
    abstract = (project / "_build/html/book/abstract.html").read_text()
    assert "UCEC" in abstract and "protein" in abstract
    assert not json.loads((run / "cohort.json").read_text())["planted_truth"]


COAD = UCEC.parent / "cptac-coad"


@pytest.mark.slow
@pytest.mark.skipif(not COAD.is_dir(), reason=f"the public CPTAC COAD data are not at {COAD}")
def test_the_coad_book_builds_from_its_manifest_with_quick_settings(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    lpm_run(project, "-p", f"raw_data_dir={COAD}", params="params/coad-quick.yaml")
    run = project / "results/coad-quick"
    glued = read_glued(run / "notebooks/01_data_assembly.ipynb")
    assert "COAD" in glued["cohort_description"]
    known = pd.read_csv(run / "tables/q1_known_effects.csv")
    assert list(known["feature"]) == ["TP53", "MLH1"]
    assert "stage" in (project / "_build/html/book/_generated/01_data_assembly.html").read_text()
