"""Executing the notebooks with papermill into the run folder, and building the book from them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import nbformat
import papermill
import yaml
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager

from lpmlib.artifacts import atomic_write, write_json, write_text
from lpmlib.cv import n_workers
from lpmlib.errors import IncompleteRunError
from lpmlib.params import RunParams
from lpmlib.provenance import run_record
from lpmlib.sources import cohort_source
from lpmlib.workflow import has_planted_truth

KERNEL_NAME = "lpm"
GENERATED = Path("book") / "_generated"


class ProjectLayoutError(FileNotFoundError):
    """The folder given as the project root lacks the notebooks or the book configuration."""


def find_notebooks(project: Path) -> list[Path]:
    """The numbered notebooks of the project, in order."""
    notebooks = sorted((project / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks or not (project / "_toc.yml").is_file():
        raise ProjectLayoutError(
            f"'{project}' is not an LPM project folder (needs notebooks/NN_*.ipynb and _toc.yml)"
        )
    return notebooks


def ensure_kernel() -> str:
    """Register this environment's Python as the `lpm` Jupyter kernel, so papermill runs it.

    A kernel of the same name that points at another Python (a stale user-level one, say) would
    shadow it; that is an error with the path to remove.
    """
    manager = KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        spec = None
    if spec is None:
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL_NAME, display_name="Python (lpm)", prefix=sys.prefix)
        spec = manager.get_kernel_spec(KERNEL_NAME)
    if Path(spec.argv[0]).absolute() != Path(sys.executable).absolute():
        raise RuntimeError(
            f"the Jupyter kernel '{KERNEL_NAME}' at {spec.resource_dir} runs {spec.argv[0]}, "
            f"not this environment's {sys.executable}: remove that folder and re-run"
        )
    return KERNEL_NAME


class IPCKernelManager(AsyncKernelManager):
    """A kernel that talks to papermill over unix sockets in a folder of its own, so that no kernel started
    at the same moment by another chapter can take its port first (with TCP, two chapters starting side
    by side could pick the same port: "Address already in use")."""

    def __init__(self, **kwargs) -> None:
        self._folder = tempfile.mkdtemp(prefix="lpm-kernel-")
        super().__init__(transport="ipc", ip=os.path.join(self._folder, "kernel"), **kwargs)

    def cleanup_resources(self, restart: bool = False) -> None:
        super().cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._folder, ignore_errors=True)


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    return set(papermill.inspect_notebook(str(notebook)).keys())


def execute_notebook(notebook: Path, params: RunParams, project: Path) -> tuple[Path, float]:
    """Execute one notebook with the run's parameters into the run folder: the executed copy and the
    seconds it took."""
    wanted = declared_parameters(notebook)
    given = {k: v for k, v in params.as_dict().items() if k in wanted}
    output = project / params.run_dir / "notebooks" / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=given,
        kernel_name=KERNEL_NAME,
        kernel_manager_class=IPCKernelManager,
        cwd=str(project),
        progress_bar=False,
        log_output=False,
        stdout_file=sys.stdout,
    )
    return output, time.perf_counter() - start


def chapter_metadata(notebook: Path) -> dict:
    """What a chapter declares for the run (notebook metadata `lpm`): what it `reads` and `writes` (table
    names, and `models` for the trained folds), what it `requires` of the run, and the chapters it must
    run `after` besides those that write what it reads."""
    return nbformat.read(notebook, as_version=4).metadata.get("lpm", {})


def producers(project: Path) -> dict[str, Path]:
    """Each artifact a chapter declares it writes -> that chapter."""
    return {
        artifact: chapter
        for chapter in find_notebooks(project)
        for artifact in chapter_metadata(chapter).get("writes", [])
    }


def needs(chapter: Path, project: Path) -> set[Path]:
    """The chapters that must have run before `chapter`: those that write what it reads, and those it
    names in `after`."""
    metadata, written_by = chapter_metadata(chapter), producers(project)
    after = {c for c in find_notebooks(project) if c.name[:2] in metadata.get("after", [])}
    return after | {written_by[artifact] for artifact in metadata.get("reads", [])}


def waits_for(chapters: list[Path], project: Path) -> dict[Path, set[Path]]:
    """Each chapter of a run -> the earlier chapters of the run that must finish before it starts.

    A chapter that declares what it reads or runs after (`chapter_metadata`) waits for those chapters;
    one that declares neither waits for every chapter before it. A needed chapter that is not part of
    this run is taken as done (`missing_inputs` checks that it ran).
    """
    order = {}
    for position, chapter in enumerate(chapters):
        earlier, metadata = chapters[:position], chapter_metadata(chapter)
        declared = "reads" in metadata or "after" in metadata
        order[chapter] = set(earlier) & needs(chapter, project) if declared else set(earlier)
    return order


RESULT_FREE = {"run_dir", "n_jobs"}  # parameters that never change what a chapter writes
CHAPTERS_RECORD = "chapters.json"  # in the run folder: each executed chapter's parameters


def chapter_parameters(chapter: Path, params: RunParams) -> dict:
    """The parameters a chapter declares that can change what it writes, at this run's values."""
    values = params.as_dict()
    return {
        name: values[name] for name in sorted(declared_parameters(chapter) - RESULT_FREE) if name in values
    }


def record_chapter(run_dir: Path, chapter: Path, params: RunParams) -> None:
    """Note in the run folder that `chapter` ran, with its parameters, for later runs of its readers."""
    path = run_dir / CHAPTERS_RECORD
    record = json.loads(path.read_text()) if path.exists() else {}
    record[chapter.name] = chapter_parameters(chapter, params)
    write_json(path, record)


def missing_inputs(selected: list[Path], params: RunParams, project: Path) -> list[str]:
    """For each chapter of the run that applies to it, in words: the chapters that write what it reads,
    are not part of the run, and have not left it in the run folder with this run's parameters."""
    run_dir = project / params.run_dir
    record_path = run_dir / CHAPTERS_RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    written_by, problems = producers(project), []
    for chapter in selected:
        if skip_reason(chapter, params, project) is not None:
            continue
        wanted: dict[Path, list[str]] = {}
        for artifact in chapter_metadata(chapter).get("reads", []):
            if written_by[artifact] not in selected:
                wanted.setdefault(written_by[artifact], []).append(artifact)
        for producer, artifacts in wanted.items():
            reason = _not_usable(producer, artifacts, record.get(producer.name), params, run_dir)
            if reason:
                problems.append(f"{chapter.stem} reads {', '.join(artifacts)} from {producer.stem}, {reason}")
    return problems


def _not_usable(
    producer: Path, artifacts: list[str], ran_with: dict | None, params: RunParams, run_dir: Path
) -> str:
    """Why the run folder's `artifacts` of `producer` cannot be read by this run ("" when they can)."""
    exists = all(
        (run_dir / "cv").is_dir()
        if artifact == "models"
        else (run_dir / "tables" / f"{artifact}.csv").is_file()
        for artifact in artifacts
    )
    if not exists:
        return f"which has not run in '{params.run_dir}'"
    if ran_with is None:
        return f"whose parameters '{params.run_dir}' does not record (a run folder of an earlier version)"
    changed = {k: v for k, v in chapter_parameters(producer, params).items() if ran_with.get(k) != v}
    if changed:
        return "which ran with " + ", ".join(
            f"{k}={ran_with.get(k)!r} (now {v!r})" for k, v in changed.items()
        )
    return ""


def with_dependencies(selected: list[Path], project: Path) -> list[Path]:
    """The selected chapters and every chapter they need, transitively, in book order."""
    chosen, todo = set(selected), list(selected)
    while todo:
        for needed in needs(todo.pop(), project) - chosen:
            chosen.add(needed)
            todo.append(needed)
    return [chapter for chapter in find_notebooks(project) if chapter in chosen]


def check_inputs(selected: list[Path], params: RunParams, project: Path) -> None:
    """Before anything runs: every chapter finds what it reads, from this run or from earlier chapters of
    the same run folder with the same parameters; otherwise an error says which chapters to run first."""
    problems = missing_inputs(selected, params, project)
    if problems:
        first = with_dependencies(selected, project)
        numbers = " ".join(chapter.name[:2] for chapter in first)
        raise IncompleteRunError(
            f"{'; '.join(problems)}. Run those chapters too (--notebooks {numbers}), or add --with-deps to "
            "run every chapter these need."
        )


def execute_chapters(chapters: list[Path], params: RunParams, project: Path, log=print) -> Iterator[Path]:
    """Execute the chapters, up to `params.n_jobs` side by side (each in its own process and kernel) and
    each once those it waits for have finished, skipping those that do not apply to the run; yields the
    executed copies as they finish.

    Chapters share nothing but the run folder, and every model runs on one thread, so the tables do not
    depend on how many run side by side.
    """
    ensure_kernel()
    workers = n_workers(params.n_jobs, len(chapters))
    pending, running, finished = waits_for(chapters, project), {}, set()
    with ProcessPoolExecutor(workers) as pool:
        while pending or running:
            ready = [chapter for chapter, waits in pending.items() if waits <= finished]
            for chapter in ready:
                if len(running) == workers:
                    break
                del pending[chapter]
                reason = skip_reason(chapter, params, project)  # now: an earlier chapter may make the cohort
                if reason:
                    log(f"[lpm] skipping {chapter.name}: {reason}")
                    finished.add(chapter)
                else:
                    log(f"[lpm] executing {chapter.name} ...")
                    running[pool.submit(execute_notebook, chapter, params, project)] = chapter
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                chapter = running.pop(future)
                output, seconds = future.result()
                log(f"[lpm] {chapter.name} done in {seconds:.1f} s")
                _record_timing(project / params.run_dir, chapter.name, seconds)
                record_chapter(project / params.run_dir, chapter, params)
                finished.add(chapter)
                yield output


def _record_timing(run_dir: Path, name: str, seconds: float) -> None:
    path = run_dir / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[name] = round(seconds, 2)
    write_json(path, timings)


def stage_for_book(executed: Path, project: Path) -> Path:
    """Copy an executed notebook where the book reads it, without its parameter cells.

    The parameters cell shows the defaults and papermill's injected cell only the overrides; the run's
    resolved parameters are recorded in the run folder instead.
    """
    notebook = nbformat.read(executed, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    target = project / GENERATED / executed.name
    return atomic_write(target, lambda tmp: nbformat.write(notebook, tmp))


def check_book_complete(params: RunParams, project: Path, selected: list[Path]) -> None:
    """Before anything runs: the book of a run of some chapters needs the run folder to hold every other
    chapter that applies to the run, executed earlier; otherwise an error says what to run."""
    executed = project / params.run_dir / "notebooks"
    missing = [
        chapter.name
        for chapter in find_notebooks(project)
        if chapter not in selected
        and not (executed / chapter.name).is_file()
        and skip_reason(chapter, params, project) is None
    ]
    if missing:
        numbers = " ".join(sorted({name[:2] for name in missing} | {c.name[:2] for c in selected}))
        raise IncompleteRunError(
            f"the book of run folder '{params.run_dir}' needs chapters that it has not executed: "
            f"{', '.join(missing)}. Run them too (--notebooks {numbers}), run every chapter (leave out "
            f"--notebooks), or pass --no-book to execute these chapters without building the book."
        )


def stage_run(params: RunParams, project: Path) -> list[Path]:
    """Stage for the book every chapter of which the run folder holds an executed copy and that applies to
    the run, and no other: the staged chapters of any earlier build are removed first."""
    shutil.rmtree(project / GENERATED, ignore_errors=True)
    executed = project / params.run_dir / "notebooks"
    chapters = [
        chapter
        for chapter in find_notebooks(project)
        if (executed / chapter.name).is_file() and skip_reason(chapter, params, project) is None
    ]
    return [stage_for_book(executed / chapter.name, project) for chapter in chapters]


def read_glued(notebook: Path) -> dict[str, str]:
    """The values an executed notebook glued for the book (their plain-text form), by key."""
    values = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook", {})
            if "name" in record:
                values[record["name"]] = output["data"][record.get("mime_prefix", "") + "text/plain"]
    return values


def staged_toc(project: Path) -> Path:
    """`_toc.yml` without the chapters this run did not stage (such as validation on a real cohort),
    written beside the staged notebooks for the build."""
    toc = yaml.safe_load((project / "_toc.yml").read_text())
    staged = {(GENERATED / path.stem).as_posix() for path in (project / GENERATED).glob("*.ipynb")}
    for part in toc["parts"]:
        part["chapters"] = [
            c
            for c in part["chapters"]
            if not c["file"].startswith(GENERATED.as_posix()) or c["file"] in staged
        ]
    toc["parts"] = [part for part in toc["parts"] if part["chapters"]]
    return write_text(project / GENERATED / "_toc.yml", yaml.safe_dump(toc, sort_keys=False))


# what a chapter may require (notebook metadata `lpm.requires`): whether the run has it, and why it is skipped
REQUIREMENTS = {
    "planted_truth": (has_planted_truth, "the cohort has no planted truth to validate against"),
    "curve_sizes": (
        lambda params, project: bool(params.curve_sizes),
        "no curve_sizes were given (e.g. -p curve_sizes=[160,640,2560])",
    ),
}


def skip_reason(notebook: Path, params: RunParams, project: Path) -> str | None:
    """Why a chapter does not apply to this run (it needs what the run lacks), or None when it does."""
    needs = chapter_metadata(notebook).get("requires")
    if needs is None:
        return None
    has, reason = REQUIREMENTS[needs]
    return None if has(params, project) else reason


def build_book(project: Path, log=print) -> Path:
    """Build the HTML book from the staged notebooks; warnings are errors."""
    jupyter_book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    if jupyter_book is None:
        raise RuntimeError("jupyter-book is not installed in this environment")
    log("[lpm] building the book ...")
    shutil.rmtree(project / "_build", ignore_errors=True)  # no stale page survives a rebuild
    toc = staged_toc(project)
    command = [jupyter_book, "build", "--all", "-W", "-n", "--keep-going", "--toc", str(toc), str(project)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    index = project / "_build" / "html" / "index.html"
    log(f"[lpm] book: {index}")
    return index


def run(
    params: RunParams,
    project: Path,
    notebooks: list[str] | None = None,
    book: bool = True,
    log=print,
    with_deps: bool = False,
) -> None:
    """Execute the notebooks (all, or those named; side by side where they allow it), stage them, and
    build the book.

    Every chapter must find what it reads (`check_inputs`); `with_deps` adds the chapters that write it.
    Chapters that do not apply to the cohort are skipped. The book is built from this run folder's
    executed chapters alone (`stage_run`), so that a run of some chapters never mixes its chapters with
    those of another run or cohort.
    """
    selected = [
        nb
        for nb in find_notebooks(project)
        if notebooks is None or any(nb.name.startswith(n) for n in notebooks)
    ]
    if with_deps:
        selected = with_dependencies(selected, project)
    cohort_source(params).check(project)
    check_inputs(selected, params, project)
    if book:
        check_book_complete(params, project, selected)
    write_json(project / params.run_dir / "params.json", params.as_dict())
    write_json(project / params.run_dir / "provenance.json", run_record(params, project))
    for _ in execute_chapters(selected, params, project, log):
        pass
    if book:
        stage_run(params, project)
        build_book(project, log)
