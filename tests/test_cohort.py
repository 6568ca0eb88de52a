"""The cohort contract: the seed-layout reader, writer, parsing rules and validation errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lpmlib import errors
from lpmlib.artifacts import folder_hashes
from lpmlib.cohort import (
    CASE_ID,
    GRADE_COLUMN,
    METADATA_FILE,
    Cohort,
    Layer,
    dropped_by_file,
    parse_driver_cell,
    parse_grade,
    read_seed_layout,
    write_seed_layout,
)

RNA_FILE = "LPM_rna_pc_scores.csv"
PY_FILE = "LPM_pY_pc_top50.csv"


def small_cohort(n: int = 12, seed: int = 0) -> Cohort:
    """A hand-made cohort: 3 drivers, 3 target layers, 2 PTM layers (one with loadings)."""
    rng = np.random.default_rng(seed)
    index = pd.Index([f"P{i:03d}" for i in range(n)], name=CASE_ID)
    labels = rng.choice(["6", "7", "3+4", "4+5", "10", "", "Grade Group 4"], size=n)
    clinical = pd.DataFrame({"grade": [parse_grade(x) for x in labels], "grade_label": labels}, index=index)
    drivers = pd.DataFrame(rng.integers(0, 2, size=(n, 3)), index=index, columns=["ERG", "PTEN", "TP53"])

    def values(k: int) -> pd.DataFrame:
        return pd.DataFrame(rng.normal(size=(n, k)), index=index, columns=[f"PC{i + 1}" for i in range(k)])

    loadings = pd.DataFrame(
        rng.normal(size=(3, 5)),
        index=pd.Index(["PC1", "PC2", "PC3"], name="component"),
        columns=[f"SITE{i}" for i in range(5)],
    )
    layers = {
        "rna": Layer("rna", "target", values(4)),
        "protein": Layer("protein", "target", values(4)),
        "metabolome": Layer("metabolome", "target", values(2)),
        "pY": Layer("pY", "ptm", values(3), loadings),
        "acetyl": Layer("acetyl", "ptm", values(3)),
    }
    return Cohort(clinical=clinical, drivers=drivers, layers=layers)


@pytest.fixture
def seed_folder(tmp_path: Path) -> Path:
    return write_seed_layout(small_cohort(), tmp_path / "cohort")


def test_round_trip_gives_the_identical_cohort(seed_folder: Path) -> None:
    cohort = read_seed_layout(seed_folder)
    assert cohort.equals(small_cohort())
    assert cohort.ptm_names == ["acetyl", "pY"] and cohort.target_names == ["rna", "protein", "metabolome"]
    assert cohort.layers["pY"].loadings is not None and cohort.layers["acetyl"].loadings is None
    assert cohort.dropped.empty


def test_equals_notices_a_changed_value(seed_folder: Path) -> None:
    cohort = read_seed_layout(seed_folder)
    cohort.layers["rna"].values.iloc[0, 0] += 1e-12
    assert not cohort.equals(small_cohort())


def test_inner_join_reports_dropped_patients_and_their_file(seed_folder: Path) -> None:
    rna = pd.read_csv(seed_folder / RNA_FILE, index_col=0)
    rna.drop(index=["P003", "P007"]).to_csv(seed_folder / RNA_FILE)
    cohort = read_seed_layout(seed_folder)
    assert cohort.n_patients == 10
    assert sorted(cohort.dropped[CASE_ID]) == ["P003", "P007"]
    assert set(cohort.dropped["missing_from"]) == {RNA_FILE}
    assert dropped_by_file(cohort).loc[RNA_FILE, "patients_dropped"] == 2


def test_driver_selection_and_unknown_driver(seed_folder: Path) -> None:
    cohort = read_seed_layout(seed_folder, drivers=["PTEN"])
    assert cohort.driver_names == ["PTEN"]
    with pytest.raises(errors.UnknownDriverError, match=r"FOXA1.*Valid drivers: ERG, PTEN, TP53"):
        read_seed_layout(seed_folder, drivers=["FOXA1"])
    with pytest.raises(errors.UnknownDriverError, match="Valid drivers: PTEN"):
        cohort.driver("ERG")


@pytest.mark.parametrize(
    ("label", "category"),
    [
        ("6", 1),
        ("3+3", 1),
        ("7", 2),
        ("3+4", 2),
        ("4+3", 2),
        ("8", 3),
        ("4+4=8", 3),
        ("9", 4),
        ("10", 4),
        ("5+5", 4),
        ("Grade Group 1", 1),
        ("grade group 3", 2),
        ("Grade Group 5", 4),
        ("", 0),
        ("nan", 0),
        ("7.0", 2),
    ],
)
def test_grade_parsing_reads_whole_scores_patterns_and_groups(label: str, category: int) -> None:
    assert parse_grade(label) == category


@pytest.mark.parametrize("label", ["11", "1", "high", "Grade Group 6", "6+5"])
def test_unreadable_grade_is_an_error_naming_file_column_and_value(label: str) -> None:
    with pytest.raises(errors.InvalidGradeError) as info:
        parse_grade(label, "meta.csv", "P001")
    message = str(info.value)
    assert "meta.csv" in message and GRADE_COLUMN in message and repr(label) in message and "P001" in message


@pytest.mark.parametrize(
    ("cell", "altered"),
    [
        ("1", 1),
        ("0", 0),
        ("", 0),
        ("nan", 0),
        ("NaN", 0),
        ("0.0", 0),
        ("fusion", 1),
        ("2", 1),
        ("no", 0),
        ("False", 0),
        ("TRUE", 1),
    ],
)
def test_driver_cells_follow_the_seed_rule(cell: str, altered: int) -> None:
    assert parse_driver_cell(cell) == altered


def _edit_csv(folder: Path, file: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    table = pd.read_csv(folder / file, dtype=str, keep_default_na=False)
    edit(table).to_csv(folder / file, index=False)


def _set(file: str, row: int, column: int, value: str) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        def edit(table: pd.DataFrame) -> pd.DataFrame:
            table.iloc[row, column] = value
            return table

        _edit_csv(folder, file, edit)

    return corrupt


def _blank_column(folder: Path) -> None:
    _edit_csv(folder, PY_FILE, lambda t: t.assign(PC2=""))


def _rename_case_id(folder: Path) -> None:
    _edit_csv(folder, METADATA_FILE, lambda t: t.rename(columns={CASE_ID: "patient"}))


def _name_layer_index(folder: Path) -> None:
    _edit_csv(folder, PY_FILE, lambda t: t.rename(columns={t.columns[0]: "sample"}))


def _disjoint_ids(folder: Path) -> None:
    _edit_csv(folder, RNA_FILE, lambda t: t.assign(**{t.columns[0]: "X" + t[t.columns[0]]}))


def _keep_three_patients(folder: Path) -> None:
    _edit_csv(folder, PY_FILE, lambda t: t.head(3))


def _reorder_loadings(folder: Path) -> None:
    path = folder / "LPM_pY_pc_top50_loadings.csv"
    pd.read_csv(path, index_col=0).iloc[::-1].to_csv(path)


BAD_INPUTS = {
    "missing file": (lambda f: (f / RNA_FILE).unlink(), errors.MissingFileError, RNA_FILE, None, None),
    "empty file": (lambda f: (f / PY_FILE).write_text(""), errors.EmptyFileError, PY_FILE, None, None),
    "header only": (
        lambda f: (f / PY_FILE).write_text(",PC1,PC2\n"),
        errors.EmptyFileError,
        PY_FILE,
        None,
        None,
    ),
    "no case_id column": (_rename_case_id, errors.MissingCaseIdError, METADATA_FILE, CASE_ID, None),
    "named first column": (_name_layer_index, errors.MissingCaseIdError, PY_FILE, "sample", None),
    "duplicate case_id": (_set(PY_FILE, 4, 0, "P002"), errors.DuplicateCaseIdError, PY_FILE, CASE_ID, "P002"),
    "non-numeric cell": (_set(PY_FILE, 5, 2, "1.2.3"), errors.NonNumericValueError, PY_FILE, "PC2", "1.2.3"),
    "inf": (_set(RNA_FILE, 1, 3, "-inf"), errors.NonFiniteValueError, RNA_FILE, "PC3", "-inf"),
    "missing cell": (_set(RNA_FILE, 1, 3, ""), errors.MissingValueError, RNA_FILE, "PC3", None),
    "all-NaN column": (_blank_column, errors.AllMissingColumnError, PY_FILE, "PC2", None),
    "unreadable grade": (
        _set(METADATA_FILE, 0, 1, "high"),
        errors.InvalidGradeError,
        METADATA_FILE,
        GRADE_COLUMN,
        "high",
    ),
    "no common patient": (_disjoint_ids, errors.NoCommonPatientsError, "cohort", None, None),
    "loadings of other components": (
        _reorder_loadings,
        errors.CohortError,
        "LPM_pY_pc_top50_loadings.csv",
        None,
        "PC3, PC2, PC1",
    ),
    "fewer patients than folds": (_keep_three_patients, errors.TooFewPatientsError, "cohort", None, None),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_its_error_naming_file_column_value_and_leaves_files_untouched(
    case: str, seed_folder: Path
) -> None:
    corrupt, error, file, column, value = BAD_INPUTS[case]
    corrupt(seed_folder)
    before = folder_hashes(seed_folder)
    with pytest.raises(error) as info:
        read_seed_layout(seed_folder, n_folds=5)
    message = str(info.value)
    assert isinstance(info.value, errors.CohortError)
    assert file in message
    if column is not None:
        assert f"column '{column}'" in message
    if value is not None:
        assert repr(value) in message
    assert folder_hashes(seed_folder) == before


def test_cohort_rejects_misaligned_or_non_binary_inputs() -> None:
    cohort = small_cohort()
    with pytest.raises(ValueError, match="binary"):
        Cohort(cohort.clinical, cohort.drivers.replace(1, 2), cohort.layers)
    with pytest.raises(ValueError, match="not aligned"):
        Cohort(cohort.clinical, cohort.drivers.iloc[::-1], cohort.layers)
    shuffled = dict(
        cohort.layers, pY=Layer("pY", "ptm", cohort.layers["pY"].values, cohort.layers["pY"].loadings[::-1])
    )
    with pytest.raises(ValueError, match="loadings' rows"):
        Cohort(cohort.clinical, cohort.drivers, shuffled)
    targets_only = {n: layer for n, layer in cohort.layers.items() if layer.role == "target"}
    with pytest.raises(ValueError, match="at least one PTM"):
        Cohort(cohort.clinical, cohort.drivers, targets_only)
