"""A quick end-to-end run, as a user would do it: `lpm run` on a small cohort to the HTML book."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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
    for chapter in ("02_model", "03_cv_training"):
        assert (project / f"_build/html/book/_generated/{chapter}.html").is_file()
    assert (project / "results/small/tables/q0_cv_performance.csv").is_file()


def test_lpm_run_refuses_an_unknown_parameter(tmp_path: Path) -> None:
    lpm = Path(sys.executable).parent / "lpm"
    result = subprocess.run([str(lpm), "run", "-p", "n_patiens=40"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown parameter 'n_patiens'" in result.stderr
