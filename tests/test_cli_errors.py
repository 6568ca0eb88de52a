"""Errors a user can act on: one paragraph without a traceback (unless --debug), no stale book after a
failed run, a foreign truth.json named before anything runs, a locked run folder, and artifacts with
the user's normal permissions."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lpmlib import runner
from lpmlib.artifacts import write_text
from lpmlib.cli import main
from lpmlib.cohort import METADATA_FILE
from lpmlib.errors import ForeignTruthError
from lpmlib.params import RunParams
from lpmlib.runner import (
    KEPT_BOOK,
    LOCK_FILE,
    book_lock,
    keep_book,
    record_chapter,
    run,
    run_lock,
    same_python,
)
from lpmlib.simulate import (
    KNOCKOUT_TRUTH_FILE,
    read_truth,
)

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project's notebooks and table of contents in a fresh folder, so runs touch nothing here."""
    folder = tmp_path_factory.mktemp("project")
    shutil.copytree(PROJECT / "notebooks", folder / "notebooks")
    shutil.copy(PROJECT / "_toc.yml", folder / "_toc.yml")
    return folder


@pytest.fixture(scope="module")
def bad_cohort(tmp_path_factory) -> Path:
    """A seed-layout folder with a metadata file and no layer."""
    folder = tmp_path_factory.mktemp("bad_cohort")
    (folder / METADATA_FILE).write_text("case_id,BCR_Gleason_Score_in_GleasonGradeColumn,ERG\nP1,7,1\n")
    return folder


def lpm(capsys, *arguments: str) -> tuple[int, str]:
    """Exit status and stderr of `lpm` with these arguments."""
    status = main(list(arguments))
    return status, capsys.readouterr().err


def no_cohort_arguments(project: Path, tmp_path: Path) -> list[str]:
    """`lpm run` arguments whose chapter 01 fails at once: the cohort folder is missing and is not to be
    simulated."""
    settings = [
        f"data_dir={tmp_path / 'missing'}",
        f"run_dir={tmp_path / 'run'}",
        "simulate_if_missing=false",
    ]
    return ["--project", str(project)] + [item for setting in settings for item in ("-p", setting)]


# ---------------------------------------------------------------------------------------------
# One paragraph, the traceback only with --debug


def test_a_bad_parameter_is_one_line_and_its_traceback_needs_debug(capsys) -> None:
    status, err = lpm(capsys, "run", "-p", "learning_rate=-1")
    assert status == 2
    assert err == "lpm: error: parameter 'learning_rate' must be a finite number > 0, got -1\n"
    for arguments in (["--debug", "run"], ["run", "--debug"]):
        status, err = lpm(capsys, *arguments, "-p", "learning_rate=-1")
        assert status == 2 and err.startswith("Traceback (most recent call last)")
        assert "ParameterError: parameter 'learning_rate' must be a finite number > 0" in err


def test_an_unexpected_error_is_one_line_that_points_to_debug(capsys, monkeypatch) -> None:
    def broken_run(*args, **kwargs) -> None:
        raise KeyError("a\nb")

    monkeypatch.setattr(runner, "run", broken_run)
    status, err = lpm(capsys, "run")
    assert status == 1
    assert err == "lpm: error: KeyError: 'a\\nb' (run with --debug for the traceback)\n"
    status, err = lpm(capsys, "run", "--debug")
    assert status == 1 and "Traceback (most recent call last)" in err and "broken_run" in err


def test_a_chapter_failing_on_a_typed_error_reports_its_message_alone(
    capsys, project: Path, truth_cohort: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    params = RunParams(data_dir=str(truth_cohort), run_dir=str(run_dir))
    (run_dir / "cv").mkdir(parents=True)  # the training chapter seems to have run, but left no model
    record_chapter(run_dir, project / "notebooks" / "03_cv_training.ipynb", params)
    arguments = ["--project", str(project), "-p", f"data_dir={truth_cohort}", "-p", f"run_dir={run_dir}"]
    status, err = lpm(capsys, "run", *arguments, "--notebooks", "04", "--no-book")
    notebook = run_dir / "notebooks" / "04_q1_gene_knockout.ipynb"
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith(
        "lpm: error: chapter 04_q1_gene_knockout failed: no intact trained model for fold 1"
    )
    assert "run the training chapter (03_cv_training)" in err and "MissingTrainingError" not in err
    assert err.endswith(f"The executed notebook, with the full traceback, is {notebook}.\n")
    assert "MissingTrainingError" in notebook.read_text()  # the traceback is where the message says


def test_a_failed_chapter_shows_its_traceback_only_with_debug(capsys, project: Path, tmp_path: Path) -> None:
    arguments = [*no_cohort_arguments(project, tmp_path), "--notebooks", "01", "--no-book"]
    status, err = lpm(capsys, "run", *arguments)
    notebook, missing = tmp_path / "run" / "notebooks" / "01_data_assembly.ipynb", tmp_path / "missing"
    assert status == 2
    assert err == (
        f"lpm: error: chapter 01_data_assembly failed: FileNotFoundError: cohort folder '{missing}' "
        "not found (set simulate_if_missing=True to simulate one). The executed notebook, with the full "
        f"traceback, is {notebook}.\n"
    )
    status, err = lpm(capsys, "--debug", "run", *arguments)
    assert status == 2 and "Traceback (most recent call last)" in err and "PapermillExecutionError" in err
    assert err.rstrip().splitlines()[-1].startswith("lpmlib.errors.ChapterError: chapter 01_data_assembly")


# ---------------------------------------------------------------------------------------------
# No stale book


def test_a_failed_run_leaves_no_book_in_build_and_names_the_last_good_one(
    capsys, project: Path, bad_cohort: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    stale = project / runner.BUILD / "html" / "index.html"  # a previous cohort's book
    kept = run_dir / KEPT_BOOK / "index.html"  # the last book this run folder built
    kept.parent.mkdir(parents=True)
    kept.write_text("<html>an earlier book</html>")
    last = f"the last book built from this run folder is at {kept}"
    for arguments in (  # a cohort that fails before any chapter, a chapter that fails
        ["--project", str(project), "-p", f"data_dir={bad_cohort}", "-p", f"run_dir={run_dir}"],
        no_cohort_arguments(project, tmp_path),
    ):
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_text("<html>another cohort's book</html>")
        status, err = lpm(capsys, "run", *arguments)
        lines = err.splitlines()
        assert status == 2 and not (project / runner.BUILD).exists()
        assert len(lines) == 2 and lines[0].startswith("lpm: error: ") and lines[1] == last
    assert lines[0].startswith("lpm: error: chapter 01_data_assembly failed: ")
    assert kept.read_text() == "<html>an earlier book</html>"
    assert [p.name for p in (run_dir / "notebooks").iterdir()] == ["01_data_assembly.ipynb"]  # none after it
    assert not (run_dir / runner.CHAPTERS_RECORD).exists()


def test_a_built_book_is_kept_in_its_run_folder(tmp_path: Path) -> None:
    html = tmp_path / runner.BUILD / "html"
    for text in ("first", "second"):
        shutil.rmtree(html, ignore_errors=True)
        (html / "_static").mkdir(parents=True)
        (html / "index.html").write_text(text)
        (html / "_static" / "style.css").write_text(text)
        index = keep_book(tmp_path, tmp_path / "run", log=lambda line: None)
    assert index == tmp_path / "run" / KEPT_BOOK / "index.html" and index.read_text() == "second"
    assert (index.parent / "_static" / "style.css").read_text() == "second"
    shutil.rmtree(html)  # the next run clears the project's build: the kept book stays
    assert index.read_text() == "second"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [KEPT_BOOK]  # no leftover copies


def test_a_failed_book_build_is_one_paragraph_with_its_first_warnings_and_a_log(tmp_path: Path) -> None:
    warnings = [
        f"{tmp_path}/book/_generated/0{k}.ipynb:12: WARNING: undefined label: 'fig{k}'" for k in range(5)
    ]
    output = subprocess.CompletedProcess([], 1, stdout="Running Sphinx\n" + "\n".join(warnings), stderr="")
    (tmp_path / runner.BUILD / "html").mkdir(parents=True)
    message = str(runner.book_build_error(output, tmp_path))
    log, html = tmp_path / runner.BUILD / "build.log", tmp_path / runner.BUILD / "html"
    first = "; ".join(warnings[:3])
    assert message == (
        f"the book build failed (jupyter-book exited with 1): {first} (and 2 more). Its whole output is in "
        f"{log}; the pages it built, warnings and all, are in {html}."
    )
    assert log.read_text().splitlines()[1:6] == warnings


# ---------------------------------------------------------------------------------------------
# A foreign truth.json


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"hello": 1}', "it lacks config, drivers, layers, leader, zero_effect_drivers"),
        ("[1, 2]", "it holds an array"),
        ('{"hello"', "not readable as JSON"),
        (None, f"a planted truth without {KNOCKOUT_TRUTH_FILE} beside it"),
    ],
)
def test_a_foreign_truth_is_an_error_before_any_chapter_runs(
    content: str | None, problem: str, truth_cohort: Path, project: Path, tmp_path: Path, capsys
) -> None:
    cohort = Path(shutil.copytree(truth_cohort, tmp_path / "cohort"))
    assert read_truth(cohort)["leader"]  # the simulator's own truth is read as it is
    if content is None:
        (cohort / KNOCKOUT_TRUTH_FILE).unlink()
    else:
        (cohort / "truth.json").write_text(content)
    with pytest.raises(ForeignTruthError, match="Move it out of the folder"):
        read_truth(cohort)
    run_dir = tmp_path / "run"
    status, err = lpm(
        capsys, "run", "--project", str(project), "-p", f"data_dir={cohort}", "-p", f"run_dir={run_dir}"
    )
    assert status == 2 and err.startswith(f"lpm: error: file '{cohort / 'truth.json'}': ") and problem in err
    assert [p.name for p in run_dir.iterdir()] == [LOCK_FILE]  # stopped before anything ran
    (cohort / "truth.json").unlink()
    assert read_truth(cohort) is None  # without truth.json: the user's own cohort, no validation chapter
    assert runner.skip_reason(
        project / "notebooks" / "10_validation.ipynb", RunParams(data_dir=str(cohort)), project
    )


# ---------------------------------------------------------------------------------------------
# The run folder's lock


def test_a_run_folder_is_locked_while_a_run_writes_into_it(capsys, project: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with run_lock(run_dir):  # another run, writing into the folder
        status, err = lpm(capsys, "run", *no_cohort_arguments(project, tmp_path), "--notebooks", "01")
    assert status == 2
    assert err == (
        f"lpm: error: run folder '{run_dir}' is locked: another lpm run (PID {os.getpid()}) is writing into "
        "it. Wait for that run to end, or give this run another folder (-p run_dir=...).\n"
    )
    assert [p.name for p in run_dir.iterdir()] == [LOCK_FILE]  # the second run wrote nothing

    held = []

    def probe(line: str) -> None:  # is the folder locked while the run logs?
        with open(run_dir / LOCK_FILE) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
            except BlockingIOError:
                held.append(handle.read().strip() == str(os.getpid()))

    params = RunParams(data_dir=str(tmp_path / "missing"), run_dir=str(run_dir), n_jobs=1)
    run(params, project, notebooks=["12"], book=False, log=probe)  # chapter 12 is skipped: no curve_sizes
    assert held == [True]
    with pytest.raises(runner.IncompleteRunError):  # a run that fails inside the lock releases it too
        run(params, project, notebooks=["04"], book=False, log=probe)
    with run_lock(run_dir):
        assert (run_dir / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert (run_dir / LOCK_FILE).read_text() == ""


def test_a_run_waits_for_another_run_s_book_build_then_builds_its_own(tmp_path: Path) -> None:
    """Staged chapters and `_build` are the project's: two runs into different folders must not mix."""
    lines: list[str] = []
    entered = threading.Event()

    def second_run() -> None:
        with book_lock(tmp_path, lines.append):
            entered.set()

    with book_lock(tmp_path):  # another run stages and builds its book
        waiting = threading.Thread(target=second_run)
        waiting.start()
        time.sleep(0.5)
        assert not entered.is_set()
        assert lines == ["[lpm] waiting for another run's book build ..."]
    waiting.join(timeout=10)
    assert entered.is_set() and len(lines) == 1


# ---------------------------------------------------------------------------------------------
# Artifact permissions


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_artifacts_get_the_mode_a_plain_open_would_give(mask: int, tmp_path: Path) -> None:
    previous = os.umask(mask)
    try:
        artifact = write_text(tmp_path / "tables" / "artifact.csv", "a,b\n")
        (tmp_path / "plain.csv").write_text("a,b\n")
        write_text(artifact, "a,b\n1,2\n")  # replacing an artifact too
    finally:
        os.umask(previous)
    mode = artifact.stat().st_mode & 0o777
    assert mode == 0o666 & ~mask == (tmp_path / "plain.csv").stat().st_mode & 0o777
    assert artifact.read_text() == "a,b\n1,2\n" and [p.name for p in artifact.parent.iterdir()] == [
        artifact.name
    ]


def test_the_kernel_check_takes_two_names_of_one_venv_python_as_the_same(tmp_path: Path) -> None:
    folder = tmp_path / "venv" / "bin"
    folder.mkdir(parents=True)
    (tmp_path / "python3.11").write_text("")
    (folder / "python3.11").symlink_to(tmp_path / "python3.11")
    (folder / "python").symlink_to("python3.11")
    other = tmp_path / "other" / "bin"
    other.mkdir(parents=True)
    (other / "python").symlink_to(tmp_path / "python3.11")
    assert same_python(folder / "python", folder / "python3.11")
    assert not same_python(other / "python", folder / "python")  # another environment on the same base
