"""A quick end-to-end run, as a user would do it: `lpm run` on a small cohort to the HTML book."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lpmlib.runner import read_glued

PROJECT = Path(__file__).resolve().parents[1]


def copy_project(target: Path) -> Path:
    """The project's notebooks and book sources in a fresh folder, so the run touches nothing here."""
    for name in ("notebooks", "book"):
        shutil.copytree(PROJECT / name, target / name, ignore=shutil.ignore_patterns("_generated", "*.pyc"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(PROJECT / name, target / name)
    return target


@pytest.mark.slow
def test_lpm_run_executes_the_notebook_and_renders_the_book(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    lpm = Path(sys.executable).parent / "lpm"
    command = [
        str(lpm), "run", "--project", str(project),
        "-p", "data_dir=data/small", "-p", "n_patients=40", "-p", "run_dir=results/small",
        "-p", "epochs=2", "-p", "latent_dim=16", "-p", "vae_latent_dim=8",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr

    executed = project / "results/small/notebooks/01_data_assembly.ipynb"
    assert read_glued(executed)["n_patients"] == "40"
    assert (project / "data/small/truth.json").is_file()
    recorded = json.loads((project / "results/small/cohort.json").read_text())
    assert recorded["n_patients"] == 40 and recorded["simulated"]

    page = project / "_build/html/book/_generated/01_data_assembly.html"
    html = page.read_text()
    assert "Data assembly" in html and "Driver prevalences" in html
    assert "<img" in html  # the heatmap and the PCA view
    assert "injected-parameters" not in html  # papermill's cell is hidden in the book
    assert (project / "_build/html/index.html").is_file()
    chapters = sorted(p.stem for p in (project / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(chapters) == 10
    for chapter in chapters:
        assert (project / f"_build/html/book/_generated/{chapter}.html").is_file(), chapter
    tables = project / "results/small/tables"
    for name in ("q0_cv_performance", "q1_knockout_summary", "q2_paired_comparison", "q3_rank_stability",
                 "q4_resistance_summary", "q5_pair_matrix_summary", "q6_leader", "validation_targets"):
        assert (tables / f"{name}.csv").is_file(), name
    assert read_glued(project / "results/small/notebooks/09_q6_storm_leader.ipynb")["q6_endpoint"] == "'metabolome'"


@pytest.mark.slow
def test_a_question_chapter_reruns_with_another_gene_without_training(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    lpm = Path(sys.executable).parent / "lpm"
    common = ["--project", str(project), "-p", "data_dir=data/small", "-p", "n_patients=40",
              "-p", "run_dir=results/small", "-p", "epochs=2", "-p", "latent_dim=16", "-p", "vae_latent_dim=8"]
    first = subprocess.run([str(lpm), "run", "--notebooks", "01", "03", "04", "--no-book", *common],
                           capture_output=True, text=True, timeout=900)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    weights = sorted((project / "results/small/cv").glob("fold*/model.pt"))
    stamps = [w.stat().st_mtime_ns for w in weights]
    again = subprocess.run([str(lpm), "run", "--notebooks", "04", "--no-book", "-p", "knockout_gene=PTEN", *common],
                           capture_output=True, text=True, timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert [w.stat().st_mtime_ns for w in weights] == stamps
    effects = pd.read_csv(project / "results/small/tables/q1_feature_effects.csv")
    assert set(effects["driver"]) == {"PTEN"}


def test_lpm_run_refuses_an_unknown_parameter(tmp_path: Path) -> None:
    lpm = Path(sys.executable).parent / "lpm"
    result = subprocess.run([str(lpm), "run", "-p", "n_patiens=40"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown parameter 'n_patiens'" in result.stderr
