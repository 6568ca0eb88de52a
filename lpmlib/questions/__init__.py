"""The six research questions, each an in-silico experiment on every held-out fold.

Every question returns tidy DataFrames: one row per fold (with the patients and carriers it rests on,
and NaN with a reason where a quantity is undefined) and a summary across folds (mean, 95% interval,
per-fold values). A question that a cohort cannot ask (Q5 with one PTM layer) writes none of its tables
and records, beside each, why (`not_written_path`), so that a run folder accounts for every table its
chapters declare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lpmlib.artifacts import write_text
from lpmlib.stats import Separation, separation_sentence


def not_written_path(run_dir: str | Path, table: str) -> Path:
    """Where a run folder records why a question did not write one of its tables (it was not asked)."""
    return Path(run_dir) / "tables" / f"{table}.not_written.txt"


@dataclass
class Answer:
    """A question's tidy tables by name, each written to the run folder as `<name>.csv`, and its headline
    values by name: the numbers and sentences the chapter's prose and the abstract quote. A question the
    cohort cannot ask has no tables, and `not_written` says, per table it would have written, why not."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    headline: dict[str, object] = field(default_factory=dict)
    not_written: dict[str, str] = field(default_factory=dict)

    @classmethod
    def not_asked(cls, tables: Sequence[str], reason: str, headline: dict[str, object]) -> Answer:
        """The answer of a question the cohort cannot ask: none of `tables`, each left out for `reason`."""
        return cls({}, headline, dict.fromkeys(tables, reason))

    @property
    def asked(self) -> bool:
        """Whether the question was asked of the cohort (it writes every table it declares)."""
        return not self.not_written

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def save(self, run) -> list[Path]:
        """Write every table atomically into `run` (a `lpmlib.workflow.RunFolder`); for a table not written,
        remove any copy an earlier run left and record why, so that no stale or empty table stands in."""
        for name, reason in self.not_written.items():
            run.table_path(name).unlink(missing_ok=True)
            write_text(not_written_path(run.path, name), reason + "\n")
        for name in self.tables:
            not_written_path(run.path, name).unlink(missing_ok=True)
        return [run.save_table(name, table, index=False) for name, table in self.tables.items()]

    def publish(self, run) -> None:
        """Save the tables into `run` and glue the headline values for the book (myst-nb), in one step."""
        from myst_nb import glue

        self.save(run)
        for name, value in self.headline.items():
            glue(name, value, display=False)


def verdict_table(separation: Separation, noun: str, keys: dict) -> pd.DataFrame:
    """A question's verdict, one row: the leader ("" when no single one is separated), the items that
    cannot be separated from the best (the best first), the test, and the verdict in words."""
    verdict = {
        "leader": separation.leader or "",
        "not_separated": ";".join(separation.tied),
        "test": separation.test,
        "sentence": separation_sentence(separation, noun),
    }
    return pd.DataFrame([keys | verdict])
