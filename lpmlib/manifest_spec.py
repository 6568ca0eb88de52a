"""The manifest of a cohort as typed, frozen specifications, parsed once from its YAML.

Every key is checked when the manifest is parsed: a missing one, a key that no specification has (named
with its path in the YAML and the closest valid name), a role or orientation that does not exist. Reading
the files it names is `lpmlib.manifest.read_manifest`'s job.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lpmlib.errors import CohortError, MissingFileError

ORIENTATIONS = ("features_x_samples", "samples_x_features")
ROLES = ("target", "ptm")
MUTATION_CLASSES = ("missense", "truncating", "inframe", "splice", "other")
COVARIATES = ("grade", "stage")


class ManifestError(CohortError):
    """A manifest that cannot describe a cohort: a missing key, a bad value, an unreadable file."""


@dataclass(frozen=True, kw_only=True)
class SampleIdSpec:
    """How a file's sample identifiers become the clinical file's: strip a `suffix` (such as `.N`), or
    keep the first group of a regular expression `pattern` that every identifier must match."""

    suffix: str | None = None
    pattern: str | None = None


@dataclass(frozen=True, kw_only=True)
class TableSpec:
    """A file of samples and columns, and how to read it."""

    file: str
    sep: str = "\t"
    orientation: str = "samples_x_features"  # or features_x_samples
    encoding: str = "utf-8"
    sample_ids: SampleIdSpec | None = None  # None: the identifiers are the clinical file's as they are


@dataclass(frozen=True, kw_only=True)
class SampleTypeSpec:
    """The clinical column that says which samples are tumours and which normals."""

    column: str
    tumour: tuple[str, ...]
    normal: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ColumnSpec:
    """A clinical column, and how its values map to what the model uses (grade categories, purity)."""

    column: str
    mapping: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ClinicalSpec(TableSpec):
    sample_type: SampleTypeSpec | None = None  # None: every sample of the clinical file is a tumour
    grade: ColumnSpec | None = None  # the clinical covariate, a grade or (not both) a stage
    stage: ColumnSpec | None = None
    purity: ColumnSpec | None = None

    @property
    def covariate(self) -> tuple[str, ColumnSpec | None]:
        """The covariate's word ('grade' or 'stage', as the book calls it) and its column."""
        return ("stage", self.stage) if self.stage is not None else ("grade", self.grade)


@dataclass(frozen=True, kw_only=True)
class MutationsSpec(TableSpec):
    """A 0/1 matrix of mutation events (rows `GENE_p.CHANGE`, or genes). `classes` keeps only events of
    these classes (read from the protein change); `hotspots` keeps, for a gene, only the changes listed."""

    genes: tuple[str, ...]
    classes: tuple[str, ...] = ()  # empty: every class
    hotspots: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CopyNumberSpec(TableSpec):
    gene: str
    threshold: float


@dataclass(frozen=True, kw_only=True)
class ClinicalDriverSpec:
    """A driver read from a clinical column. A blank cell, or a value in `unknown`, is unknown: the
    tumour is left out of both the carriers and the non-carriers. With `not_altered` given, a value in
    none of the three lists is an error; without it, every other value is not altered."""

    column: str
    altered: tuple[str, ...]
    not_altered: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DriversSpec:
    mutations: MutationsSpec | None = None
    copy_number: dict[str, CopyNumberSpec] = field(default_factory=dict)
    clinical: dict[str, ClinicalDriverSpec] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class NormalsSpec:
    """A file of a layer's normal samples, read like the layer's own file."""

    file: str
    sample_ids: SampleIdSpec | None = None


@dataclass(frozen=True, kw_only=True)
class LayerSpec(TableSpec):
    role: str  # target or ptm
    preprocessing: dict[str, Any] = field(default_factory=dict)
    normals: NormalsSpec | None = None  # normal samples in a file of their own
    parents: tuple[str, ...] = ()  # target layers this target is decoded from (e.g. protein from rna)


@dataclass(frozen=True)
class KnownEffect:
    """A known effect of an alteration: `feature` of `layer` is `altered` ("higher" or "lower") in
    carriers of `driver` than in the other tumours, so reversing it in silico should move it back."""

    driver: str
    layer: str
    feature: str
    altered: str


@dataclass(frozen=True, kw_only=True)
class ManifestSpec:
    """A whole manifest: where its files are, the clinical table, the drivers, the layers and the rest."""

    source: Path
    name: str = ""  # the manifest file's stem when not given
    data_dir: str | None = None  # None: the caller gives the folder
    clinical: ClinicalSpec
    drivers: DriversSpec
    layers: dict[str, LayerSpec]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    endpoint: str = "metabolome"
    known_effects: tuple[KnownEffect, ...] = ()


def parse_manifest(path: str | Path) -> ManifestSpec:
    """The manifest at `path`, every key checked (see the module's docstring)."""
    source = Path(path)
    if not source.is_file():
        raise MissingFileError("manifest not found", file=source)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise ManifestError(f"not UTF-8 ({error.reason} at byte {error.start})", file=source) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ManifestError(f"not a readable YAML file: {problem}{where}", file=source) from None
    keys = _checked(raw, ManifestSpec, "the manifest", source, skip={"source"})
    layers = {
        name: _layer(spec, name, source) for name, spec in _mapping(keys["layers"], "layers", source).items()
    }
    _check_parents(layers, source)
    return ManifestSpec(
        source=source,
        name=str(keys.get("name", source.stem)),
        data_dir=keys.get("data_dir"),
        clinical=_clinical(keys["clinical"], source),
        drivers=_drivers(keys["drivers"], source),
        layers=layers,
        preprocessing=_preprocessing(keys.get("preprocessing"), "preprocessing", source),
        endpoint=str(keys.get("endpoint", "metabolome")),
        known_effects=tuple(
            _spec(item, KnownEffect, f"known_effects[{i}]", source)
            for i, item in enumerate(keys.get("known_effects") or [])
        ),
    )


def _drivers(raw: Any, source: Path) -> DriversSpec:
    drivers = _checked(raw, DriversSpec, "drivers", source)
    copy_number = _mapping(drivers.get("copy_number", {}), "drivers.copy_number", source)
    clinical = _mapping(drivers.get("clinical", {}), "drivers.clinical", source)
    return DriversSpec(
        mutations=_mutations(drivers["mutations"], source) if "mutations" in drivers else None,
        copy_number={
            name: _table(spec, CopyNumberSpec, f"drivers.copy_number.{name}", source)
            for name, spec in copy_number.items()
        },
        clinical={
            name: _spec(spec, ClinicalDriverSpec, f"drivers.clinical.{name}", source)
            for name, spec in clinical.items()
        },
    )


def _mutations(raw: Any, source: Path) -> MutationsSpec:
    where = "drivers.mutations"
    hotspots = _mapping(_checked(raw, MutationsSpec, where, source).get("hotspots", {}), where, source)
    spec = _table(
        raw, MutationsSpec, where, source, hotspots={str(g): _texts(v) for g, v in hotspots.items()}
    )
    for name in spec.classes:
        _one_of(name, MUTATION_CLASSES, f"a class of {where}.classes", source)
    for gene in spec.hotspots:
        _one_of(gene, spec.genes, f"a gene of {where}.hotspots", source)
    return spec


def _clinical(raw: Any, source: Path) -> ClinicalSpec:
    keys = _checked(raw, ClinicalSpec, "clinical", source)
    if keys.get("grade") is not None and keys.get("stage") is not None:
        raise ManifestError(
            "clinical gives both a grade and a stage; the model takes one covariate",
            file=source,
            hint="Keep one of clinical.grade and clinical.stage.",
        )
    sample_type = (
        None
        if keys.get("sample_type") is None
        else _spec(keys["sample_type"], SampleTypeSpec, "clinical.sample_type", source)
    )
    required = {"grade": {"column", "mapping"}, "stage": {"column", "mapping"}, "purity": {"column"}}
    columns = {
        name: _spec(keys[name], ColumnSpec, f"clinical.{name}", source, required=needed)
        for name, needed in required.items()
        if keys.get(name) is not None
    }
    return _table(keys, ClinicalSpec, "clinical", source, sample_type=sample_type, **columns)


def _layer(raw: Any, name: str, source: Path) -> LayerSpec:
    where = f"layers.{name}"
    keys = _checked(raw, LayerSpec, where, source)
    normals = keys.get("normals")
    parsed = {"preprocessing": _preprocessing(keys.get("preprocessing"), f"{where}.preprocessing", source)}
    if normals is not None:
        parsed["normals"] = _with_sample_ids(normals, NormalsSpec, f"{where}.normals", source)
    spec = _table(raw, LayerSpec, where, source, **parsed)
    _one_of(spec.role, ROLES, f"the role of layer '{name}'", source)
    return spec


def _preprocessing(raw: Any, where: str, source: Path) -> dict[str, Any]:
    """Preprocessing settings, every key one of `PipelineSettings`'s fields (values checked when the
    settings are made)."""
    from lpmlib.preprocess import PipelineSettings

    return dict(_checked(raw or {}, PipelineSettings, where, source))


def _check_parents(layers: dict[str, LayerSpec], source: Path) -> None:
    """Each target's parents are other target layers, and no target is its own ancestor."""
    targets = [name for name, spec in layers.items() if spec.role == "target"]
    for name, spec in layers.items():
        for parent in spec.parents:
            if spec.role != "target":
                raise ManifestError(f"layers.{name}.parents: only a target layer has parents", file=source)
            _one_of(parent, [t for t in targets if t != name], f"a parent of layer '{name}'", source)
    if not acyclic({name: list(spec.parents) for name, spec in layers.items()}):
        raise ManifestError(
            "the layers' parents form a cycle", file=source, hint="Each target must come from earlier ones."
        )


def acyclic(parents: dict[str, list[str]]) -> bool:
    """Whether following parents from any layer never comes back to it."""
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> bool:
        if name in path:
            return False
        if name in done:
            return True
        ok = all(visit(p, (*path, name)) for p in parents.get(name, []))
        done.add(name)
        return ok

    return all(visit(name, ()) for name in parents)


def _one_of(value: Any, valid: tuple | list, what: str, source: Path) -> None:
    if value not in valid:
        close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
        guess = f"Did you mean '{close[0]}'? " if close else ""
        raise ManifestError(
            f"{what} must be one of {', '.join(map(str, valid))}",
            file=source,
            value=value,
            hint=guess.strip(),
        )


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def _with_sample_ids(raw: Any, cls: type, where: str, source: Path, **parsed: Any) -> Any:
    """A specification whose `sample_ids` (if given) is parsed too: exactly one of suffix and pattern."""
    keys = _checked(raw, cls, where, source)
    if keys.get("sample_ids") is not None:
        ids = _spec(keys["sample_ids"], SampleIdSpec, f"{where}.sample_ids", source)
        if (ids.suffix is None) == (ids.pattern is None):
            raise ManifestError(
                f"{where}.sample_ids needs exactly one of 'suffix' and 'pattern'", file=source
            )
        if ids.pattern is not None:
            try:
                if re.compile(ids.pattern).groups != 1:
                    raise re.error("it must have exactly one group, the clinical identifier")
            except re.error as error:
                raise ManifestError(
                    f"{where}.sample_ids.pattern is not a usable regular expression: {error}",
                    file=source,
                    value=ids.pattern,
                ) from None
        parsed["sample_ids"] = ids
    return _spec(raw, cls, where, source, parsed=parsed)


def _table(raw: Any, cls: type, where: str, source: Path, **parsed: Any) -> Any:
    """A table's specification: its keys checked, its orientation one of `ORIENTATIONS`."""
    spec = _with_sample_ids(raw, cls, where, source, **parsed)
    _one_of(spec.orientation, ORIENTATIONS, f"the orientation of {where}", source)
    return spec


def _spec(
    raw: Any,
    cls: type,
    where: str,
    source: Path,
    required: set[str] | None = None,
    parsed: dict | None = None,
) -> Any:
    """An instance of a specification class from its YAML mapping; lists become tuples of text."""
    keys = _checked(raw, cls, where, source, required=required)
    values = {
        key: tuple(str(v) for v in value) if isinstance(value, list) else value for key, value in keys.items()
    }
    return cls(**(values | (parsed or {})))


def _checked(
    raw: Any,
    cls: type,
    where: str,
    source: Path,
    required: set[str] | None = None,
    skip: set[str] = frozenset(),
) -> dict:
    """The mapping `raw`, every key one of `cls`'s fields and every required one present."""
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} must be a mapping of keys to values", file=source, value=raw)
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
    names = [f.name for f in fields]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            guess = f"Did you mean '{close[0]}'? " if close else ""
            raise ManifestError(
                f"unknown key '{key}' in {where}", file=source, hint=f"{guess}Keys: {', '.join(names)}."
            )
    if required is None:
        required = {
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
    for key in sorted(required, key=names.index):
        if key not in raw:
            raise ManifestError(f"missing key '{key}' in {where}", file=source)
    return raw


def _mapping(raw: Any, where: str, source: Path) -> dict:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} must be a mapping of names to specifications", file=source, value=raw)
    return raw
