"""Errors raised at the data boundary: each names the file, the column and the offending value."""

from __future__ import annotations

from pathlib import Path


class CohortError(ValueError):
    """A cohort input that cannot be used as it is; the input files are left untouched."""

    def __init__(
        self,
        problem: str,
        file: str | Path | None = None,
        column: str | None = None,
        value: object = None,
        hint: str = "",
    ) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.column = column
        self.value = value
        parts = []
        if self.file is not None:
            parts.append(f"file '{self.file}'")
        if column is not None:
            parts.append(f"column '{column}'")
        if value is not None:
            parts.append(f"value {value!r}")
        where = ", ".join(parts)
        message = f"{where}: {problem}" if where else problem
        super().__init__(f"{message}. {hint}" if hint else message)


class MissingFileError(CohortError):
    """A file that the cohort layout requires does not exist."""


class EmptyFileError(CohortError):
    """A file has no data rows (or no bytes at all)."""


class MissingCaseIdError(CohortError):
    """A file has no case_id column to align patients on."""


class DuplicateCaseIdError(CohortError):
    """A case_id appears more than once in one file."""


class NonNumericValueError(CohortError):
    """A cell of an omic layer is not a number."""


class NonFiniteValueError(CohortError):
    """A cell of an omic layer is +inf or -inf."""


class MissingValueError(CohortError):
    """A cell of an omic layer is empty or NaN (patients lacking a layer are left out of its file)."""


class AllMissingColumnError(CohortError):
    """A column is empty or NaN for every patient."""


class OutOfRangeValueError(CohortError):
    """A value beyond the documented bound on magnitude (`lpmlib.cohort.MAX_MAGNITUDE`)."""


class AmbiguousValueError(CohortError):
    """A cell that could mean more than one thing, such as a driver cell 'maybe'."""


class DuplicateColumnError(CohortError):
    """A column name appears twice in one file's header."""


class EncodingError(CohortError):
    """A file that cannot be decoded with its encoding."""


class InvalidGradeError(CohortError):
    """A grade cell cannot be read as a Gleason score, a Gleason pattern or a grade group."""


class NoCommonPatientsError(CohortError):
    """No case_id is present in every file of the cohort."""


class TooFewPatientsError(CohortError):
    """The cohort has fewer patients than cross-validation folds."""


class UnknownDriverError(CohortError, KeyError):
    """A driver name was asked for that the cohort does not have."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class IncompleteRunError(RuntimeError):
    """A book is asked of a run folder that lacks chapters the book needs."""


class ForeignTruthError(CohortError):
    """A cohort folder's truth.json that is not the planted truth the simulator writes."""


class ProjectLayoutError(FileNotFoundError):
    """The folder given as the project root lacks the notebooks or the book configuration."""


class ChapterError(RuntimeError):
    """A chapter of the run failed: which one, its error's own message, and where its executed notebook is."""


class RunFolderLockedError(RuntimeError):
    """Another run is writing into the run folder."""


class BookBuildError(RuntimeError):
    """Jupyter Book could not build the book from the executed chapters."""
