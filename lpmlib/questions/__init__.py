"""The six research questions, each an in-silico experiment on every held-out fold.

Every question returns tidy DataFrames: one row per fold (with the patients and carriers it rests on,
and NaN with a reason where a quantity is undefined) and a summary across folds (mean, 95% interval,
per-fold values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lpmlib.stats import Separation, separation_sentence


@dataclass
class Answer:
    """A question's tidy tables by name, each written to the run folder as `<name>.csv`, and its headline
    values by name: the numbers and sentences the chapter's prose and the abstract quote."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    headline: dict[str, object] = field(default_factory=dict)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def save(self, run) -> list[Path]:
        """Write every table atomically into `run` (a `lpmlib.workflow.RunFolder`)."""
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
