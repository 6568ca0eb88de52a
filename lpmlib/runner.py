"""Executing the notebooks with papermill into the run folder, and building the book from them."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import nbformat
import papermill
import yaml
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from papermill.exceptions import PapermillExecutionError

from lpmlib.artifacts import atomic_write, write_json, write_text
from lpmlib.cv import MissingTrainingError, n_workers
from lpmlib.errors import (
    BookBuildError,
    ChapterError,
    CohortError,
    IncompleteRunError,
    ProjectLayoutError,
    RunFolderLockedError,
)
from lpmlib.params import ParameterError, RunParams
from lpmlib.provenance import run_record
from lpmlib.questions import not_written_path
from lpmlib.sources import cohort_source
from lpmlib.workflow import has_planted_truth

KERNEL_NAME = "lpm"
GENERATED = Path("book") / "_generated"
BUILD = "_build"  # the project's book build; never left holding another run's book
KEPT_BOOK = "book"  # in the run folder: a copy of the last book built from it
LOCK_FILE = ".lock"  # in the run folder: held by the run writing into it
BOOK_LOCK = ".book.lock"  # in the project: held by the run staging, building or clearing the book

# errors whose message is all a user needs (it names the file, column or value, and what to do)
USER_ERRORS = (
    CohortError,
    ParameterError,
    IncompleteRunError,
    MissingTrainingError,
    ProjectLayoutError,
    ChapterError,
    RunFolderLockedError,
    BookBuildError,
)


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
    if not same_python(Path(spec.argv[0]), Path(sys.executable)):
        raise RuntimeError(
            f"the Jupyter kernel '{KERNEL_NAME}' at {spec.resource_dir} runs {spec.argv[0]}, "
            f"not this environment's {sys.executable}: remove that folder and re-run"
        )
    return KERNEL_NAME


def same_python(one: Path, other: Path) -> bool:
    """Whether two paths start the same environment's Python (`python` and `python3.11` of one venv are
    links to one interpreter in one folder)."""
    return one.absolute().parent == other.absolute().parent and one.resolve() == other.resolve()


class IPCKernelManager(AsyncKernelManager):
    """A kernel that talks to papermill over unix sockets in a folder of its own, so that no kernel started
    at the same moment by another chapter can take its port first (with TCP, two chapters starting side
    by side could pick the same port: "Address already in use")."""

    def __init__(self, **kwargs) -> None:
        self._folder = tempfile.mkdtemp(prefix="lpm-kernel-")
        super().__init__(transport="ipc", ip=os.path.join(self._folder, "kernel"), **kwargs)

    async def cleanup_resources(self, restart: bool = False) -> None:
        await super().cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._folder, ignore_errors=True)

    async def _async_interrupt_kernel(self) -> None:
        """No interrupt while shutting down. jupyter_client sends SIGINT to the kernel's process group (its
        training workers too) before it asks the kernel to shut down; a kernel that has finished its
        notebook needs none, and one caught in a message handler wrote "KeyboardInterrupt caught in
        kernel" as an ERROR line of a run that succeeded."""
        if not self.shutting_down:
            await super()._async_interrupt_kernel()


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


RESULT_FREE = {"run_dir", "n_jobs", "scheduler"}  # parameters that never change what a chapter writes
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
    """Why the run folder's `artifacts` of `producer` cannot be read by this run ("" when they can). A
    table its question was not asked for (it recorded why, `questions.not_written_path`) counts as there:
    its readers handle its absence."""
    exists = all(
        (run_dir / "cv").is_dir()
        if artifact == "models"
        else (run_dir / "tables" / f"{artifact}.csv").is_file()
        or not_written_path(run_dir, artifact).is_file()
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
    depend on how many run side by side. Once a chapter fails no other starts; those already running
    finish (and are recorded), then the first failure is raised as a `ChapterError`.
    """
    ensure_kernel()
    workers = n_workers(params.n_jobs, len(chapters))
    pending, running, finished, failure = waits_for(chapters, project), {}, set(), None
    with ProcessPoolExecutor(workers) as pool:
        while running or (pending and failure is None):
            ready = [chapter for chapter, waits in pending.items() if waits <= finished and failure is None]
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
                try:
                    output, seconds = future.result()
                except Exception as error:
                    failure = failure or chapter_error(chapter, error, project / params.run_dir)
                    others = ", ".join(other.name for other in running.values())
                    still = f"; waiting for those still running to finish ({others})" if running else ""
                    log(f"[lpm] {chapter.name} failed{still}")
                    continue
                log(f"[lpm] {chapter.name} done in {seconds:.1f} s")
                _record_timing(project / params.run_dir, chapter.name, seconds)
                record_chapter(project / params.run_dir, chapter, params)
                finished.add(chapter)
                yield output
    if failure is not None:
        raise failure


def user_error_names() -> set[str]:
    """The class names of `USER_ERRORS` and their subclasses: a chapter's error of one of them is reported
    by its message alone."""
    names, classes = set(), list(USER_ERRORS)
    while classes:
        cls = classes.pop()
        names.add(cls.__name__)
        classes.extend(cls.__subclasses__())
    return names


def chapter_error(chapter: Path, error: Exception, run_dir: Path) -> ChapterError:
    """One paragraph for a failed chapter: which, its error's own message, and where its executed notebook
    (with the full traceback) is. The original error stays attached as the cause."""
    in_notebook = isinstance(error, PapermillExecutionError)
    name, message = (error.ename, error.evalue) if in_notebook else (type(error).__name__, str(error))
    message = " ".join(message.split())  # one paragraph
    reason = message if name in user_error_names() else f"{name}: {message}" if message else name
    notebook = run_dir / "notebooks" / chapter.name
    shown = "with the full traceback" if in_notebook else "as far as it ran"
    where = f" The executed notebook, {shown}, is {notebook}." if notebook.is_file() else ""
    failure = ChapterError(f"chapter {chapter.stem} failed: {reason.rstrip('.')}.{where}")
    failure.__cause__ = error
    return failure


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
    clear_book(project)  # no stale page survives a rebuild
    toc = staged_toc(project)
    command = [jupyter_book, "build", "--all", "-W", "-n", "--keep-going", "--toc", str(toc), str(project)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise book_build_error(result, project)
    index = project / BUILD / "html" / "index.html"
    log(f"[lpm] book: {index}")
    return index


def book_build_error(result: subprocess.CompletedProcess, project: Path) -> BookBuildError:
    """The first warnings of a failed build in one paragraph; its whole output goes to a log file."""
    output = f"{result.stdout}\n{result.stderr}"
    log_file = write_text(project / BUILD / "build.log", output)
    lines = [line.strip() for line in output.splitlines() if re.search(r"\b(WARNING|ERROR)\b", line)]
    lines = lines or [line.strip() for line in result.stderr.splitlines() if line.strip()][-1:]
    first = "; ".join(lines[:3]) + (f" (and {len(lines) - 3} more)" if len(lines) > 3 else "")
    html = project / BUILD / "html"
    pages = f"; the pages it built, warnings and all, are in {html}" if html.is_dir() else ""
    return BookBuildError(
        f"the book build failed (jupyter-book exited with {result.returncode}): {first}. Its whole output is "
        f"in {log_file}{pages}."
    )


def clear_book(project: Path) -> None:
    """Remove the project's built book, so that it never shows a book that is not the current run's."""
    shutil.rmtree(project / BUILD, ignore_errors=True)


def keep_book(project: Path, run_dir: Path, log=print) -> Path:
    """Copy the built book into the run folder (`KEPT_BOOK`), replacing the copy of an earlier build, so
    that the last good book of a run folder survives a later failed run."""
    kept, fresh, old = run_dir / KEPT_BOOK, run_dir / f".{KEPT_BOOK}.new", run_dir / f".{KEPT_BOOK}.old"
    for folder in (fresh, old):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(project / BUILD / "html", fresh, copy_function=_link_or_copy)
    if kept.exists():
        kept.rename(old)
    fresh.rename(kept)
    shutil.rmtree(old, ignore_errors=True)
    log(f"[lpm] a copy of the book is kept in {kept / 'index.html'}")
    return kept / "index.html"


def _link_or_copy(source: str, target: str) -> None:
    """A hard link where the file system allows one (a rebuild writes new files, so the kept book stays as
    it was and is not stored twice), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def last_book(run_dir: Path) -> Path | None:
    """The index page of the last book built from the run folder, None when it has none."""
    index = run_dir / KEPT_BOOK / "index.html"
    return index if index.is_file() else None


@contextmanager
def exclusive(path: Path, busy: Callable[[IO[str]], None]) -> Iterator[IO[str]]:
    """Hold the exclusive lock of the file `path` (created if missing) for the block. When another process
    holds it, `busy(handle)` is called first: it raises to give up, or returns to wait for the lock."""
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy(handle)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock (`LOCK_FILE`, with the holder's PID) while a run writes into it; a second
    run into the same folder stops at once instead of retraining what the first is training."""

    def locked(handle: IO[str]) -> None:
        handle.seek(0)
        holder = handle.read().strip()
        who = f"another lpm run (PID {holder})" if holder.isdigit() else "another lpm run"
        raise RunFolderLockedError(
            f"run folder '{run_dir}' is locked: {who} is writing into it. Wait for that run to end, or "
            "give this run another folder (-p run_dir=...)."
        ) from None

    run_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(run_dir / LOCK_FILE, locked) as handle:
        try:
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.truncate(0)


@contextmanager
def book_lock(project: Path, log=print) -> Iterator[None]:
    """Hold the project's book lock (`BOOK_LOCK`) while a run clears, stages, builds or keeps the book:
    the staged chapters and `_build` are the project's, so runs into different folders at the same time
    build one after the other, each its own book, never a mix of two runs' chapters."""
    with exclusive(project / BOOK_LOCK, lambda _: log("[lpm] waiting for another run's book build ...")):
        yield


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
    those of another run or cohort. The run holds the run folder's lock throughout (`run_lock`); a run
    that builds a book clears the project's built book before anything else, and keeps a copy of the
    book it builds in the run folder; a failed run's error notes where the last book of its folder is.
    """
    selected = [
        nb
        for nb in find_notebooks(project)
        if notebooks is None or any(nb.name.startswith(n) for n in notebooks)
    ]
    if with_deps:
        selected = with_dependencies(selected, project)
    run_dir = project / params.run_dir
    try:
        with run_lock(run_dir):
            _run_chapters(params, project, selected, book, log)
    except Exception as error:
        kept = last_book(run_dir)
        if kept is not None:
            error.add_note(f"the last book built from this run folder is at {kept}")
        raise


def _run_chapters(params: RunParams, project: Path, selected: list[Path], book: bool, log) -> None:
    """Check the cohort and what the chapters read, execute them, and build and keep the book (see `run`).
    A run that builds a book first removes the project's built book, so that whatever stops the run, the
    project never shows another run's book."""
    if book:
        with book_lock(project, log):
            clear_book(project)
    cohort_source(params).check(project)
    check_inputs(selected, params, project)
    if book:
        check_book_complete(params, project, selected)
    write_json(project / params.run_dir / "params.json", params.as_dict())
    write_json(project / params.run_dir / "provenance.json", run_record(params, project))
    for _ in execute_chapters(selected, params, project, log):
        pass
    if book:
        with book_lock(project, log):
            stage_run(params, project)
            build_book(project, log)
            keep_book(project, project / params.run_dir, log)
