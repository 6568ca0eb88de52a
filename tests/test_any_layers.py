"""Cohorts of any layers: the book on a cohort with one PTM layer and on one with no metabolome.

Each cohort is a small simulated one whose kept layers are written as CSV files of model-ready values,
under the names a real cohort gives them, and read back through a manifest, as a user's cohort is.
In a file of its own so that its books build beside the others when the tests run in parallel.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_end_to_end import copy_project, lpm_run, visible_text

from lpmlib import describe
from lpmlib.cohort import parse_grade
from lpmlib.errors import IncompleteRunError
from lpmlib.params import RunParams
from lpmlib.questions import not_written_path
from lpmlib.questions.masking import Q5_TABLES, q5_not_asked
from lpmlib.runner import chapter_metadata, check_inputs, find_notebooks, read_glued, record_chapter
from lpmlib.simulate import SimulationConfig, simulate_cohort, write_simulated_cohort
from lpmlib.validation import dependency_recovery, read_question_tables
from lpmlib.workflow import RunFolder

PROJECT = Path(__file__).resolve().parents[1]
TINY = SimulationConfig(
    n_patients=40, n_components=4, n_ptm_features=8, n_metabolome_features=8, monte_carlo_draws=2
)
QUICK = {  # a few seconds of training per chapter: these books test the prose and the tables, not the model
    "epochs": 2,
    "latent_dim": 16,
    "vae_latent_dim": 8,
    "ig_steps": 4,
    "n_seeds": 1,
    "n_jobs": 1,  # the test suite already runs its files side by side
}


def write_manifest_cohort(folder: Path, layers: dict[str, tuple[str, str]], endpoint: str) -> Path:
    """A tiny simulated cohort as a user's files: each of `layers` (name -> (simulated layer, role)) a CSV
    of model-ready values, a clinical CSV (Gleason score and drivers), and the manifest that reads them."""
    cohort = simulate_cohort(TINY).cohort
    folder.mkdir(parents=True)
    clinical = pd.concat([cohort.clinical["grade_label"].rename("gleason"), cohort.drivers], axis=1)
    clinical.to_csv(folder / "clinical.csv")
    for name, (simulated, _) in layers.items():
        cohort.layers[simulated].values.to_csv(folder / f"{name}.csv")
    grades = {str(label): parse_grade(str(label)) for label in clinical["gleason"].unique()}
    manifest = {
        "name": folder.name,
        "data_dir": ".",
        "clinical": {
            "file": "clinical.csv",
            "sep": ",",
            "grade": {"column": "gleason", "mapping": {k: v for k, v in grades.items() if v}},
        },
        "drivers": {"clinical": {name: {"column": name, "altered": ["1"]} for name in cohort.drivers}},
        "layers": {
            name: {"file": f"{name}.csv", "sep": ",", "role": role} for name, (_, role) in layers.items()
        },
        "endpoint": endpoint,
        "preprocessing": {"model_ready": True},
    }
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder / "manifest.yaml"


def build_book(root: Path, manifest: Path, **params: object) -> tuple[Path, Path]:
    """The book of the manifest's cohort with the quick settings: the project copy and its run folder."""
    project = copy_project(root / "project")
    (project / "params/any-layers.yaml").write_text(yaml.safe_dump({**QUICK, **params}))
    lpm_run(
        project, "-p", f"manifest={manifest}", "-p", "run_dir=results/run", params="params/any-layers.yaml"
    )
    return project, project / "results/run"


def declared_tables(project: Path, run: Path) -> set[str]:
    """The tables declared by the chapters the run executed (the others do not apply to its cohort)."""
    return {
        f"{name}.csv"
        for chapter in find_notebooks(project)
        if (run / "notebooks" / chapter.name).is_file()
        for name in chapter_metadata(chapter).get("writes", [])
        if name != "models"
    }


def page(project: Path, name: str) -> str:
    """The text of a built page, navigation included."""
    return visible_text(project / f"_build/html/book/{name}.html")


def abstract(project: Path) -> str:
    """The text of the abstract's own section."""
    text = page(project, "abstract")
    start = text.index("Cancer is rarely")
    return text[start : text.index("How to read this book", start)]


@pytest.mark.slow
def test_a_cohort_with_one_ptm_layer_builds_its_book_and_says_why_q5_is_not_asked(tmp_path: Path) -> None:
    layers = {"protein": ("protein", "target"), "miRNA": ("rna", "target"), "phospho": ("phospho", "ptm")}
    manifest = write_manifest_cohort(tmp_path / "single_ptm", layers, endpoint="protein")
    project, run = build_book(tmp_path, manifest, pca_layer="protein")
    reason = "Q5 needs at least two PTM layers; this cohort has one (phospho), so it is not asked."
    # chapter 08 is in the book, says why, and writes no table; the run folder records why for each
    assert reason in page(project, "_generated/08_q5_ptm_dependency")
    written = {path.name for path in (run / "tables").glob("*.csv")}
    assert not any(name.startswith("q5_") for name in written)
    assert all(not_written_path(run, name).read_text().strip() == reason for name in Q5_TABLES)
    assert written == declared_tables(project, run) - {f"{name}.csv" for name in Q5_TABLES}
    assert not (project / "_build/html/book/_generated/10_validation.html").exists()  # no planted truth
    glued = read_glued(run / "notebooks/09_q6_storm_leader.ipynb")
    assert glued["q6_endpoint"] == "'protein'"
    summary = abstract(project)
    assert read_glued(run / "notebooks/08_q5_ptm_dependency.ipynb")["q5_abstract"] == "''"
    assert (
        "Q5" not in summary and "five layers" not in summary and "metabolome" not in page(project, "abstract")
    )
    assert "protein, miRNA and one layer of post-translational modification (PTM: phosphorylation)" in summary
    verdict = pd.read_csv(run / "tables/q6_verdict.csv")["sentence"].iloc[0]
    assert verdict.startswith("phospho adds ") and "held-out R^2 of the protein beyond genomics" in verdict
    assert (
        "Q6 asks what the cohort's one PTM layer, phospho, adds to the prediction of the protein" in summary
    )
    assert verdict in summary


@pytest.mark.slow
def test_a_cohort_without_a_metabolome_builds_its_book_naming_its_own_layers(tmp_path: Path) -> None:
    layers = {
        "rna": ("rna", "target"),
        "protein": ("protein", "target"),
        "glyco": ("pY", "ptm"),
        "acetyl": ("acetyl", "ptm"),
        "phospho": ("phospho", "ptm"),
    }
    project, run = build_book(
        tmp_path, write_manifest_cohort(tmp_path / "targets_rna_protein", layers, "protein")
    )
    written = {path.name for path in (run / "tables").glob("*.csv")}
    assert written == declared_tables(project, run)  # Q5 applies: every declared table is written
    assert list((run / "tables").glob("*.not_written.txt")) == []
    summary = abstract(project)
    assert "metabolome" not in page(project, "abstract")
    flow = "RNA, protein and three layers of post-translational modification (PTM: glyco, acetylation and"
    assert f"{flow} phosphorylation)" in summary
    q5 = ast.literal_eval(read_glued(run / "notebooks/08_q5_ptm_dependency.ipynb")["q5_sentence"])
    assert f"Q5 asks what the other PTM layers add to each one: {q5}" in summary
    assert "Q6 asks which of the three PTM layers adds most to the prediction of the protein" in summary
    model = page(project, "_generated/02_model")
    assert "metabolome" not in model and "read out as every layer of the cohort: here RNA, protein" in model
    layers_sentence = "This cohort has two target layers (rna and protein) and three PTM layers"
    assert f"{layers_sentence} (glyco, acetyl and phospho)." in page(project, "_generated/01_data_assembly")


# ---------------------------------------------------------------------------------------------
# The pieces, without a book


def test_the_layers_of_any_cohort_in_words() -> None:
    cohort = simulate_cohort(TINY).cohort
    assert describe.layer_flow(cohort) == (
        "RNA, protein, five layers of post-translational modification (PTM: phosphotyrosine, acetylation, "
        "methylation, ubiquitination and phosphorylation) and the metabolome"
    )
    cohort.layers = {name: cohort.layers[name] for name in ("protein", "phospho")}
    assert (
        describe.layer_flow(cohort)
        == "protein and one layer of post-translational modification (PTM: phosphorylation)"
    )
    assert (
        describe.layers_sentence(cohort)
        == "This cohort has one target layer (protein) and one PTM layer (phospho)."
    )
    assert describe.listed(["a", "b", "c"]) == "a, b and c" and describe.counted(12, "layer") == "12 layers"


def test_a_table_its_question_did_not_write_is_accounted_for_by_its_readers(tmp_path: Path) -> None:
    folder = write_simulated_cohort(simulate_cohort(TINY), tmp_path / "cohort")  # planted truth: 10 applies
    params = RunParams(data_dir=str(folder), run_dir=str(tmp_path / "run"))
    chapters = {chapter.name[:2]: chapter for chapter in find_notebooks(PROJECT)}
    validation = chapters["10"]
    run = RunFolder(tmp_path / "run")
    for name in chapter_metadata(validation)["reads"]:
        if name not in Q5_TABLES:
            run.save_table(name, pd.DataFrame({"x": [1]}))
    for number in ("04", "06", "07", "08", "09"):
        record_chapter(run.path, chapters[number], params)
    with pytest.raises(IncompleteRunError, match="q5_dependency_summary from 08_q5_ptm_dependency"):
        check_inputs([validation], params, PROJECT)
    q5_not_asked(["phospho"]).save(run)
    check_inputs([validation], params, PROJECT)  # the table is accounted for: Q5 recorded why it is absent
    assert "q5_dependency_summary" not in read_question_tables(run)
    assert dependency_recovery(None, pd.DataFrame()).empty
