"""The whole book, as a user and CI run it: `lpm run` with the quick parameters.

Checks that the book renders every chapter, that a second run of the chapters that draw random
numbers gives byte-identical tables, that one question chapter re-runs alone with another gene
(changing only its own tables, training nothing), and that the built book works in a real browser.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
import yaml

from lpmlib.runner import chapter_metadata, find_notebooks, read_glued

PROJECT = Path(__file__).resolve().parents[1]
UCEC = PROJECT.parent / "shared" / "data" / "cptac-ucec"
LPM = Path(sys.executable).parent / "lpm"


def copy_project(target: Path) -> Path:
    """The project's notebooks, book sources and parameters in a fresh folder, so runs touch nothing here."""
    for name in ("notebooks", "book", "params", "examples"):
        shutil.copytree(PROJECT / name, target / name, ignore=shutil.ignore_patterns("_generated", "*.pyc"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(PROJECT / name, target / name)
    return target


def lpm_run(project: Path, *arguments: str, params: str = "params/quick.yaml") -> subprocess.CompletedProcess:
    command = [str(LPM), "run", "--project", str(project), "--params", str(project / params), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result


def visible_text(page: Path) -> str:
    """The text a reader sees on a built page, whitespace collapsed."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", "", page.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def tables(run_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((run_dir / "tables").glob("*.csv"))}


@pytest.fixture(scope="module")
def quick_book(tmp_path_factory) -> Path:
    """A project copy in which the whole book was built with the quick parameters into results/a."""
    project = copy_project(tmp_path_factory.mktemp("book") / "project")
    lpm_run(project, "-p", "run_dir=results/a")
    return project


@pytest.mark.slow
def test_the_book_renders_every_chapter_with_its_tables(quick_book: Path) -> None:
    run = quick_book / "results/a"
    chapters = sorted(p.stem for p in (quick_book / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(chapters) == 12
    for chapter in chapters:
        page = quick_book / f"_build/html/book/_generated/{chapter}.html"
        assert page.is_file(), chapter
        assert "injected-parameters" not in page.read_text()  # papermill's cell is hidden in the book
    assert read_glued(run / "notebooks/01_data_assembly.ipynb")["n_patients"] == "60"
    assert json.loads((run / "cohort.json").read_text())["planted_truth"]
    # the run folder holds exactly the tables the chapters declare they write (notebook metadata)
    declared = {
        name for chapter in find_notebooks(quick_book) for name in chapter_metadata(chapter).get("writes", [])
    }
    assert set(tables(run)) == {f"{name}.csv" for name in declared - {"models"}}
    abstract = visible_text(quick_book / "_build/html/book/abstract.html")
    assert "60" in abstract and "Abstract" in abstract
    # every verdict is in the abstract, and every winner it names carries its interval
    for name in ("q1_storm_verdict", "q2_verdict", "q3_verdict", "q4_verdict", "q6_verdict"):
        assert pd.read_csv(run / "tables" / f"{name}.csv")["sentence"].iloc[0] in abstract, name
    winners = re.findall(r"\S+ leads, at (.*?) \(mean and 95% interval over folds\)", abstract)
    number = r"-?\d+\.\d+"
    assert all(re.fullmatch(rf"{number} \[{number}, {number}\]", interval) for interval in winners), winners
    assert "validation targets were met" in abstract and "ridge" in abstract
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["parameters"]["epochs"] == 3 and provenance["packages"]["torch"].startswith("2.")


# The chapters that draw random numbers: simulation, training (with Q0's cross-validated baselines),
# the knockout's bootstrap and the attributions. The others are deterministic functions of their tables
# and models; re-running these four keeps the check within the suite's time.
RANDOM_CHAPTERS = ("01", "03", "04", "06")


@pytest.mark.slow
def test_a_second_run_with_chapters_and_folds_side_by_side_gives_identical_tables(quick_book: Path) -> None:
    # the first run executed one chapter and one fold at a time (quick.yaml); this one runs 04 and 06
    # side by side, and the folds of 03 in two processes
    result = lpm_run(
        quick_book, "--notebooks", *RANDOM_CHAPTERS, "--no-book", "-p", "run_dir=results/b", "-p", "n_jobs=2"
    )
    order = [text for text in result.stdout.splitlines() if text.startswith("[lpm] ")]
    position = {text.split(" in ")[0]: i for i, text in enumerate(order)}  # "done in 12.3 s" -> "done"
    started, done = "[lpm] executing {}.ipynb ...", "[lpm] {}.ipynb done"
    assert position[started.format("06_q3_master_regulators")] < position[done.format("04_q1_gene_knockout")]
    assert position[done.format("03_cv_training")] < position[started.format("04_q1_gene_knockout")]
    first, second = tables(quick_book / "results/a"), tables(quick_book / "results/b")
    assert len(second) > 10 and second.keys() < first.keys()
    assert [name for name in second if first[name] != second[name]] == []


@pytest.mark.slow
def test_a_question_chapter_reruns_with_another_gene_changing_only_its_tables(quick_book: Path) -> None:
    shutil.copytree(quick_book / "results/a", quick_book / "results/c")
    weights = sorted((quick_book / "results/c/cv").glob("fold*/model.pt"))
    stamps = [w.stat().st_mtime_ns for w in weights]
    lpm_run(
        quick_book, "--notebooks", "04", "--no-book", "-p", "run_dir=results/c", "-p", "knockout_gene=PTEN"
    )
    before, after = tables(quick_book / "results/a"), tables(quick_book / "results/c")
    changed = {name for name in before if before[name] != after[name]}
    assert changed and all(name.startswith("q1_") for name in changed), changed
    assert [w.stat().st_mtime_ns for w in weights] == stamps  # nothing was retrained
    assert set(pd.read_csv(quick_book / "results/c/tables/q1_feature_effects.csv")["driver"]) == {"PTEN"}


def toc_pages(project: Path) -> list[str]:
    """The HTML pages of every file in the table of contents, root first."""
    toc = yaml.safe_load((project / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f"{file}.html" for file in files]


def broken_links(page, html_root: Path) -> list[str]:
    """Internal links of the loaded page whose target file or anchor does not exist."""
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    broken = []
    for href in hrefs:
        url = urlparse(href)
        if url.scheme != "file":
            continue
        target = Path(unquote(url.path))
        if not target.is_file() or html_root not in target.parents:
            broken.append(href)
        elif url.fragment and f'id="{url.fragment}"' not in target.read_text():
            broken.append(href)
    return broken


@pytest.mark.slow
def test_every_page_loads_in_a_real_browser_with_its_images_and_links(quick_book: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it where it can)")
    html_root = quick_book / "_build/html"
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=chromium,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-quic",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
        except Exception as error:  # a machine where chromium cannot start
            pytest.skip(f"chromium does not start here: {error}")
        page = browser.new_page()
        for name in toc_pages(quick_book):
            response = page.goto((html_root / name).as_uri())
            assert response is not None and response.ok, name
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])"
            )
            assert all(loaded for _, loaded in images), (name, [src for src, ok in images if not ok])
            assert broken_links(page, html_root) == [], name
        page.goto((html_root / "book/abstract.html").as_uri())
        page.screenshot(path=str(quick_book / "results/a/abstract.png"), full_page=True)
        browser.close()
    assert (quick_book / "results/a/abstract.png").stat().st_size > 10_000


def test_lpm_run_refuses_an_unknown_parameter(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(LPM), "run", "-p", "n_patiens=40"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "unknown parameter 'n_patiens'" in result.stderr
