"""The cohort data contract, and the reader and writer of the seed layout.

A `Cohort` holds, aligned on one `case_id` index, the clinical table (with the grade), a binary
driver matrix and named omic layers, each a patients x features float matrix with a role: `target`
(RNA, protein, metabolome: decoded by the model) or `ptm` (post-translational modification layers:
the model's inputs). Validation happens here, once, at the boundary.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from lpmlib.errors import (
    AllMissingColumnError,
    AmbiguousValueError,
    CohortError,
    DuplicateCaseIdError,
    DuplicateColumnError,
    EmptyFileError,
    EncodingError,
    InvalidGradeError,
    MissingCaseIdError,
    MissingFileError,
    MissingValueError,
    NoCommonPatientsError,
    NonFiniteValueError,
    NonNumericValueError,
    OutOfRangeValueError,
    TooFewPatientsError,
    UnknownDriverError,
)

Role = Literal["target", "ptm"]

SEED_DRIVERS: tuple[str, ...] = (
    "ERG",
    "ETV1",
    "ETV4",
    "FOXA1",
    "SPOP",
    "CDK12",
    "BRAF",
    "RAF1",
    "FGFR2",
    "SKIL",
    "BRCA2",
    "IDH1",
    "MSI",
    "CUL3",
    "CHD1",
    "MYC",
    "PTEN",
    "TP53",
    "rare",
)
SEED_PTMS: tuple[str, ...] = ("pY", "acetyl", "methyl", "ubiq", "phospho")

METADATA_FILE = "FinalMetaData.csv"
GRADE_COLUMN = "BCR_Gleason_Score_in_GleasonGradeColumn"
CASE_ID = "case_id"
TARGET_FILES = {
    "rna": "LPM_rna_pc_scores.csv",
    "protein": "LPM_protein_pc_top50.csv",
    "metabolome": "LPM_metabo_pc_top50.csv",
}
PTM_FILE_PATTERN = re.compile(r"^LPM_(?P<name>.+)_pc_top50\.csv$")
LOADINGS_SUFFIX = "_loadings.csv"

GRADE_LABELS = {
    0: "unknown",
    1: "Gleason <=6 (grade group 1)",
    2: "Gleason 7 (grade groups 2-3)",
    3: "Gleason 8 (grade group 4)",
    4: "Gleason 9-10 (grade group 5)",
}
N_GRADES = len(GRADE_LABELS)
_NOT_ALTERED = {"", "0", "nan", "na", "none", "false", "no", "wt", "wild type", "wildtype"}
# Words of doubt: the seed rule would count them as altered, so they are errors instead.
_AMBIGUOUS = {"?", "maybe", "unknown", "uncertain", "unclear", "possible", "possibly", "probable", "likely"}
_AMBIGUOUS |= {"suspected", "equivocal", "indeterminate", "pending", "tbd", "not tested", "not assessed"}
# The largest magnitude a value may have. Beyond it, values are errors of unit or export rather than
# measurements (raw intensities reach about 1e11), and squares and sums in the z-score, PCA and training
# lose all precision (1e300 overflows).
MAX_MAGNITUDE = 1e15


@dataclass
class Layer:
    """One omic layer: patients x features values, its role, and optional PCA loadings."""

    name: str
    role: Role
    values: pd.DataFrame
    loadings: pd.DataFrame | None = None  # components x original features, when values are PC scores
    # a raw cohort's fold view only: the values before z-score and projection (the selected features in
    # their own units, imputed and purity-adjusted), and the fitted pipeline that says why a feature is not
    # among them; known biology is checked against these, not against a reconstruction
    features: pd.DataFrame | None = None
    pipeline: Any = None  # lpmlib.preprocess.RawLayerPipeline

    @property
    def n_features(self) -> int:
        return self.values.shape[1]


@dataclass
class Cohort:
    """Patients aligned across clinical data, drivers and omic layers.

    `dropped` lists the patients that were in some input file but not in all of them (the inner
    join), with the files they were missing from. `normals` holds, per layer that has them, the
    model-ready values of normal-tissue samples (same columns as the layer): a reference state for
    the questions, never training data.
    """

    clinical: pd.DataFrame
    drivers: pd.DataFrame
    layers: dict[str, Layer]
    dropped: pd.DataFrame = field(default_factory=lambda: dropped_frame([]))
    normals: dict[str, pd.DataFrame] = field(default_factory=dict)
    grade_labels: dict[int, str] = field(default_factory=lambda: dict(GRADE_LABELS))  # category -> meaning
    covariate: str = "grade"  # what the clinical covariate is, in the book's words: grade or stage
    # True where a driver's status is unknown: the model sees 0 (it has no third state), and the questions
    # leave the tumour out of both the driver's carriers and its non-carriers. None: every status known.
    unknown_drivers: pd.DataFrame | None = None
    # target -> the targets it is decoded from; None: the flow, protein from rna when the cohort has both
    target_parents: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        if self.unknown_drivers is None:
            self.unknown_drivers = pd.DataFrame(False, index=self.drivers.index, columns=self.drivers.columns)
        if self.target_parents is None:
            flow = {"rna", "protein"} <= set(self.target_names)
            self.target_parents = {"protein": ["rna"]} if flow else {}
        self._check()

    def _check(self) -> None:
        index = self.clinical.index
        if index.name != CASE_ID or not index.is_unique:
            raise ValueError("clinical must be indexed by unique case_id")
        if "grade" not in self.clinical.columns:
            raise ValueError("clinical needs a 'grade' column (0 = unknown)")
        frames = {"drivers": self.drivers} | {n: layer.values for n, layer in self.layers.items()}
        for name, frame in frames.items():
            if not frame.index.equals(index):
                raise ValueError(f"{name} is not aligned on the clinical case_id index")
        if not self.drivers.isin([0, 1]).all().all():
            raise ValueError("drivers must be a binary 0/1 matrix")
        known = self.unknown_drivers
        if not (known.index.equals(index) and known.columns.equals(self.drivers.columns)):
            raise ValueError("unknown_drivers must have the drivers' rows and columns")
        if (self.drivers.to_numpy()[known.to_numpy(dtype=bool)] != 0).any():
            raise ValueError("a driver of unknown status must be 0 in drivers (the model's input)")
        for child, parents in self.target_parents.items():
            if not {child, *parents} <= set(self.target_names):
                raise ValueError(f"target_parents of {child}: {parents} are not all target layers")
        for layer in self.layers.values():
            if layer.role not in ("target", "ptm"):
                raise ValueError(f"layer {layer.name}: role must be 'target' or 'ptm'")
            if layer.loadings is not None and list(layer.loadings.index) != list(layer.values.columns):
                raise ValueError(f"layer {layer.name}: the loadings' rows must be its columns, in order")
        if not self.ptm_names:
            raise ValueError("a cohort needs at least one PTM layer")
        unlabelled = set(self.clinical["grade"]) - set(self.grade_labels)
        if unlabelled or not set(self.grade_labels) <= set(range(N_GRADES)):
            raise ValueError(f"grades must be labelled categories 0..{N_GRADES - 1}: {sorted(unlabelled)}")
        for name, frame in self.normals.items():
            if name not in self.layers or not frame.columns.equals(self.layers[name].values.columns):
                raise ValueError(f"normals of {name}: not a layer, or not the layer's columns in order")
            if not frame.index.is_unique:
                raise ValueError(f"normals of {name}: sample identifiers must be unique")

    @property
    def case_ids(self) -> pd.Index:
        return self.clinical.index

    @property
    def n_patients(self) -> int:
        return len(self.clinical)

    @property
    def driver_names(self) -> list[str]:
        return list(self.drivers.columns)

    @property
    def ptm_names(self) -> list[str]:
        return [n for n, layer in self.layers.items() if layer.role == "ptm"]

    @property
    def target_names(self) -> list[str]:
        return [n for n, layer in self.layers.items() if layer.role == "target"]

    def driver(self, name: str) -> pd.Series:
        """The 0/1 column of one driver; an unknown name is an error listing the valid ones."""
        check_drivers([name], self.driver_names)
        return self.drivers[name]

    def non_carriers(self, name: str) -> np.ndarray:
        """Whether each patient is known not to carry the driver (an unknown status is neither)."""
        return ((self.driver(name) == 0) & ~self.unknown_drivers[name]).to_numpy()

    @property
    def target_order(self) -> list[str]:
        """Target layers with every parent before its children (otherwise in the cohort's order)."""

        def depth(name: str) -> int:
            return 1 + max((depth(p) for p in self.target_parents.get(name, [])), default=-1)

        return sorted(self.target_names, key=depth)

    def fold_cohort(self, train_rows: np.ndarray, settings: object = None) -> Cohort:
        """A fold's view of the cohort: a model-ready cohort is the same for every fold (a raw one,
        `manifest.RawCohort`, preprocesses each fold's training patients)."""
        return self

    def summary(self) -> pd.DataFrame:
        """One row per layer: role, patients, features, and whether loadings are kept."""
        rows = [
            {
                "layer": n,
                "role": layer.role,
                "patients": layer.values.shape[0],
                "features": layer.n_features,
                "loadings": None if layer.loadings is None else layer.loadings.shape[1],
            }
            for n, layer in self.layers.items()
        ]
        return pd.DataFrame(rows).set_index("layer")

    def equals(self, other: Cohort) -> bool:
        """True when both cohorts hold the same patients, values, roles, loadings and normals."""
        if set(self.layers) != set(other.layers) or set(self.normals) != set(other.normals):
            return False
        same = self.clinical.equals(other.clinical) and self.drivers.equals(other.drivers)
        for name, layer in self.layers.items():
            theirs = other.layers[name]
            same &= layer.role == theirs.role and layer.values.equals(theirs.values)
            same &= (layer.loadings is None) == (theirs.loadings is None)
            if layer.loadings is not None and theirs.loadings is not None:
                same &= layer.loadings.equals(theirs.loadings)
        same &= all(frame.equals(other.normals[name]) for name, frame in self.normals.items())
        return bool(same)


def check_drivers(names: Sequence[str], available: Sequence[str], file: str | None = None) -> None:
    """Raise UnknownDriverError for the first name not in `available`, listing the valid names."""
    for name in names:
        if name not in available:
            raise UnknownDriverError(
                "no such driver",
                file=file,
                column=name,
                hint=f"Valid drivers: {', '.join(available)}.",
            )


# ---------------------------------------------------------------------------------------------
# Parsing rules of the seed layout


def parse_grade(value: str, file: str | Path = METADATA_FILE, case_id: str = "") -> int:
    """Grade category of one cell: a Gleason score ('7'), a pattern ('3+4') or 'Grade Group N'.

    Categories: 0 unknown (empty), 1 Gleason <=6 / grade group 1, 2 Gleason 7 / grade groups 2-3,
    3 Gleason 8 / grade group 4, 4 Gleason 9-10 / grade group 5. The whole number is read, so a
    score of 10 is 10, not 1.
    """
    text = value.strip().lower()
    if text in ("", "nan", "na", "none", "unknown"):
        return 0
    pattern = re.fullmatch(r"(\d+)\s*\+\s*(\d+)(?:\s*=\s*\d+)?", text)
    group = re.fullmatch(r"(?:isup\s*)?grade\s*group\s*(\d+)", text)
    number = re.fullmatch(r"(\d+)(?:\.0+)?", text)
    if pattern and all(1 <= int(p) <= 5 for p in pattern.groups()):
        return _grade_of_score(int(pattern[1]) + int(pattern[2]))
    if group and 1 <= int(group[1]) <= 5:
        return {1: 1, 2: 2, 3: 2, 4: 3, 5: 4}[int(group[1])]
    if number and 2 <= int(number[1]) <= 10:
        return _grade_of_score(int(number[1]))
    raise InvalidGradeError(
        f"cannot read the grade of case_id '{case_id}'",
        file=file,
        column=GRADE_COLUMN,
        value=value,
        hint="Use a Gleason score 2-10, a pattern like '3+4', 'Grade Group 1-5' or leave it empty.",
    )


def _grade_of_score(score: int) -> int:
    return 1 if score <= 6 else min(score - 5, 4)


def parse_driver_cell(
    value: str, file: str | Path = METADATA_FILE, case_id: str = "", column: str = ""
) -> int:
    """The seed rule: 0 for blank, zero, 'nan', 'no', 'false', 'none' or 'WT'; 1 for any other value
    (a number, 'yes', 'fusion'...), except a word of doubt ('maybe', 'unknown', '?'), which is an error
    because counting it as altered would be a guess."""
    text = value.strip().lower()
    if text in _AMBIGUOUS:
        raise AmbiguousValueError(
            f"cannot tell whether case_id '{case_id}' carries the driver",
            file=file,
            column=column,
            value=value,
            hint="Write 1 (altered) or 0 (not altered); leave a patient of unknown status out of the file.",
        )
    if text in _NOT_ALTERED:
        return 0
    try:
        return int(float(text) != 0)
    except ValueError:
        return 1


# ---------------------------------------------------------------------------------------------
# Reading


def read_seed_layout(folder: str | Path, drivers: Sequence[str] | None = None, n_folds: int = 5) -> Cohort:
    """Read a cohort in the seed layout (see the module docstring of the book's data chapter).

    `drivers` selects driver columns of FinalMetaData.csv (default: every column but case_id and
    the grade). Patients are the inner join of all files; the others are listed in `Cohort.dropped`.
    """
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    meta = _read_table(meta_path, case_id_column=CASE_ID)
    if GRADE_COLUMN not in meta.columns:
        raise CohortError("missing grade column", file=meta_path, column=GRADE_COLUMN)
    driver_columns = [c for c in meta.columns if c != GRADE_COLUMN]
    names = list(drivers) if drivers is not None else driver_columns
    check_drivers(names, driver_columns, file=str(meta_path))

    layers: dict[str, tuple[Role, Path]] = {}
    for name, file_name in TARGET_FILES.items():
        layers[name] = ("target", folder / file_name)
    for path in sorted(folder.glob("LPM_*_pc_top50.csv")):
        match = PTM_FILE_PATTERN.match(path.name)
        if match and path.name not in TARGET_FILES.values():
            layers[match["name"]] = ("ptm", path)
    if not any(role == "ptm" for role, _ in layers.values()):
        raise MissingFileError(
            "no PTM layer file found",
            file=folder / "LPM_<ptm>_pc_top50.csv",
            hint="The seed layout needs at least one LPM_<name>_pc_top50.csv besides protein and metabo.",
        )

    values = {name: _read_layer(path) for name, (_, path) in layers.items()}
    tables = {str(meta_path): meta.index} | {str(p): values[n].index for n, (_, p) in layers.items()}
    kept, dropped = inner_join(tables)
    if len(kept) < n_folds:
        raise TooFewPatientsError(
            f"{len(kept)} patients are common to all files, fewer than the {n_folds} folds",
            file=folder,
            hint="Add patients or lower the number of folds.",
        )

    grades = [parse_grade(meta.at[c, GRADE_COLUMN], meta_path, c) for c in kept]
    clinical = pd.DataFrame(
        {"grade": np.array(grades, dtype=np.int64), "grade_label": meta.loc[kept, GRADE_COLUMN]},
        index=kept,
    )
    driver_matrix = pd.DataFrame(
        {name: [parse_driver_cell(meta.at[c, name], meta_path, c, name) for c in kept] for name in names},
        index=kept,
        dtype=np.int64,
    )
    return Cohort(
        clinical=clinical,
        drivers=driver_matrix,
        layers={
            name: Layer(name, role, values[name].loc[kept], _read_loadings(path, values[name].columns))
            for name, (role, path) in layers.items()
        },
        dropped=dropped,
    )


def _read_table(path: Path, case_id_column: str | None) -> pd.DataFrame:
    """A CSV as strings, indexed by case_id, with the file-level checks every input shares."""
    if not path.is_file():
        raise MissingFileError("file not found", file=path)
    if path.stat().st_size == 0:
        raise EmptyFileError("file is empty", file=path)
    check_header(path, sep=",", encoding="utf-8")
    table = read_csv_decoded(path, dtype=str, keep_default_na=False, encoding="utf-8")
    if table.empty:
        raise EmptyFileError("file has a header but no rows", file=path)
    if case_id_column is None:  # omic layer: the first column is the case_id, unnamed or 'case_id'
        first = table.columns[0]
        if not (first.startswith("Unnamed: 0") or first.strip() in ("", CASE_ID)):
            raise MissingCaseIdError(
                "the first column must hold the case_id (unnamed or named 'case_id')",
                file=path,
                column=first,
            )
        case_id_column = first
    elif case_id_column not in table.columns:
        raise MissingCaseIdError(
            "no case_id column",
            file=path,
            column=CASE_ID,
            hint=f"Columns found: {', '.join(table.columns[:10])}.",
        )
    ids = table[case_id_column].str.strip()
    if (ids == "").any():
        row = int(np.flatnonzero(ids == "")[0]) + 2
        raise MissingCaseIdError(f"empty case_id on line {row}", file=path, column=CASE_ID)
    duplicated = ids[ids.duplicated()]
    if not duplicated.empty:
        raise DuplicateCaseIdError("duplicate case_id", file=path, column=CASE_ID, value=duplicated.iloc[0])
    return table.drop(columns=case_id_column).set_axis(pd.Index(ids, name=CASE_ID))


def _read_layer(path: Path) -> pd.DataFrame:
    """An omic layer file: every cell a finite number, no column entirely empty."""
    return _to_numeric(_read_table(path, case_id_column=None), path)


def _to_numeric(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    stripped = np.char.strip(table.to_numpy(dtype=str))
    parsed = pd.to_numeric(pd.Series(stripped.ravel()), errors="coerce").to_numpy(dtype=np.float64)
    numeric = pd.DataFrame(parsed.reshape(stripped.shape), index=table.index, columns=table.columns)
    blank = pd.DataFrame(
        np.isin(np.char.lower(stripped), ["", "nan", "na"]), index=table.index, columns=table.columns
    )
    empty_columns = table.columns[blank.all(axis=0).to_numpy()]
    if len(empty_columns):
        raise AllMissingColumnError("every value is missing", file=path, column=empty_columns[0])
    bad = numeric.isna() & ~blank
    if bad.any().any():
        case_id, column = _first_true(bad)
        raise NonNumericValueError(
            f"not a number (case_id '{case_id}')", file=path, column=column, value=table.at[case_id, column]
        )
    if blank.any().any():
        case_id, column = _first_true(blank)
        raise MissingValueError(
            f"missing value (case_id '{case_id}')",
            file=path,
            column=column,
            value=table.at[case_id, column],
            hint="Leave a patient who lacks this layer out of the file, or impute the value.",
        )
    check_magnitude(numeric, path, table)
    return numeric.astype(np.float64)


def check_magnitude(values: pd.DataFrame, path: Path, written: pd.DataFrame | None = None) -> None:
    """Every value finite and within `MAX_MAGNITUDE` (NaN, a missing value, passes); an error quotes the
    cell as `written` in the file when given."""
    array = values.to_numpy(dtype=float)
    for bad, error, problem in [
        (np.isinf(array), NonFiniteValueError, "infinite value"),
        (np.abs(np.nan_to_num(array)) > MAX_MAGNITUDE, OutOfRangeValueError, "value beyond the bound"),
    ]:
        if bad.any():
            case_id, column = _first_true(pd.DataFrame(bad, values.index, values.columns))
            raise error(
                f"{problem} (sample '{case_id}')",
                file=path,
                column=column,
                value=_plain((values if written is None else written).at[case_id, column]),
                hint=f"Values must lie within +-{MAX_MAGNITUDE:.0e}; check the file's units or export.",
            )


def read_csv_decoded(path: Path, hint: str = "", **options) -> pd.DataFrame:
    """`pd.read_csv`, with a file that does not decode in its encoding named as the error."""
    encoding = options.get("encoding", "utf-8")
    try:
        return pd.read_csv(path, **options)
    except UnicodeDecodeError as error:
        raise EncodingError(
            f"cannot be read as {encoding} ({error.reason}{_where_undecodable(path, encoding)})",
            file=path,
            hint=hint or f"Save it as {encoding.upper()}.",
        ) from None
    except LookupError as error:
        raise EncodingError("unknown encoding", file=path, value=encoding, hint=hint) from error


def _where_undecodable(path: Path, encoding: str) -> str:
    """' on line N, byte B' of the first byte that does not decode (the file, decompressed if gzipped)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return f" on line {line}, byte {error.start}"
    return ""


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so that a message quotes 1e+300, not np.float64(...)."""
    return value.item() if isinstance(value, np.generic) else value


def check_header(path: Path, sep: str, encoding: str, hint: str = "") -> list[str]:
    """The file's header, read before the table: it must decode and name no column twice (pandas
    would rename a second 'X' to 'X.1' silently)."""
    header = read_csv_decoded(path, hint, sep=sep, encoding=encoding, header=None, nrows=1, dtype=str)
    names = [str(name).strip() for name in header.iloc[0].fillna("")] if len(header) else []
    seen = set()
    for name in names[1:]:
        if name in seen:
            raise DuplicateColumnError("a column is named twice in the header", file=path, column=name)
        seen.add(name)
    return names


def _first_true(mask: pd.DataFrame) -> tuple[str, str]:
    row, col = np.argwhere(mask.to_numpy())[0]
    return mask.index[row], mask.columns[col]


def _read_loadings(layer_path: Path, components: pd.Index) -> pd.DataFrame | None:
    path = loadings_path(layer_path)
    if not path.exists():
        return None
    loadings = _to_numeric(_read_table(path, case_id_column=None), path).rename_axis("component")
    if list(loadings.index) != list(components):
        raise CohortError(
            "the rows of a loadings file must be the layer's component columns, in order",
            file=path,
            column="(first column)",
            value=", ".join(loadings.index[:5]),
            hint=f"Expected: {', '.join(components[:5])}{', ...' if len(components) > 5 else ''}",
        )
    return loadings


def loadings_path(layer_path: Path) -> Path:
    """Where the loadings of a layer file live: `<stem>_loadings.csv` beside it."""
    return layer_path.with_name(layer_path.stem + LOADINGS_SUFFIX)


def inner_join(tables: dict[str, pd.Index]) -> tuple[pd.Index, pd.DataFrame]:
    """Patients present in every file (in the order of the first file) and a report of the rest."""
    first = next(iter(tables.values()))
    common = set.intersection(*(set(ids) for ids in tables.values()))
    if not common:
        counts = ", ".join(f"{Path(f).name} ({len(ids)})" for f, ids in tables.items())
        raise NoCommonPatientsError(
            f"no case_id is present in every file: {counts}", file=Path(next(iter(tables))).parent
        )
    kept = pd.Index([c for c in first if c in common], name=CASE_ID)
    everyone = list(dict.fromkeys(c for ids in tables.values() for c in ids))
    rows = [
        (case_id, ";".join(Path(f).name for f, ids in tables.items() if case_id not in set(ids)))
        for case_id in everyone
        if case_id not in common
    ]
    return kept, dropped_frame(rows)


def dropped_frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[CASE_ID, "missing_from"])


def dropped_by_file(cohort: Cohort) -> pd.DataFrame:
    """How many patients the inner join dropped because they were missing from each file."""
    files = cohort.dropped["missing_from"].str.split(";").explode()
    return files.value_counts().rename_axis("missing_from").rename("patients_dropped").to_frame()


# ---------------------------------------------------------------------------------------------
# Writing


def write_seed_layout(cohort: Cohort, folder: str | Path) -> Path:
    """Write `cohort` in the seed layout (plus `<layer>_loadings.csv` where loadings exist)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = pd.concat(
        [cohort.clinical["grade_label"].rename(GRADE_COLUMN), cohort.drivers], axis=1
    ).reset_index()
    meta.to_csv(folder / METADATA_FILE, index=False)
    for name, layer in cohort.layers.items():
        path = folder / layer_file_name(name, layer.role)
        layer.values.rename_axis(None).to_csv(path)
        if layer.loadings is not None:
            layer.loadings.rename_axis(None).to_csv(loadings_path(path))
    return folder


def layer_file_name(name: str, role: Role) -> str:
    """The seed-layout file name of a layer."""
    if role == "target":
        if name not in TARGET_FILES:
            raise ValueError(f"the seed layout has no file for target layer '{name}'")
        return TARGET_FILES[name]
    return f"LPM_{name}_pc_top50.csv"
