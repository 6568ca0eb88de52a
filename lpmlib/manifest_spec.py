"""The manifest of a cohort as typed, frozen specifications, parsed once from its YAML.

Every key is checked when the manifest is parsed: a missing one, a key that no specification has (named
with its path in the YAML and the closest valid name), a role or orientation that does not exist. Reading
the files it names is `lpmlib.manifest.read_manifest`'s job.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lpmlib.errors import CohortError, MissingFileError

ORIENTATIONS = ("features_x_samples", "samples_x_features")
ROLES = ("target", "ptm")


class ManifestError(CohortError):
    """A manifest that cannot describe a cohort: a missing key, a bad value, an unreadable file."""


@dataclass(frozen=True, kw_only=True)
class TableSpec:
    """A file of samples and columns, and how to read it."""

    file: str
    sep: str = "\t"
    orientation: str = "samples_x_features"  # or features_x_samples
    encoding: str = "utf-8"


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
    grade: ColumnSpec | None = None
    purity: ColumnSpec | None = None


@dataclass(frozen=True, kw_only=True)
class MutationsSpec(TableSpec):
    genes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CopyNumberSpec(TableSpec):
    gene: str
    threshold: float


@dataclass(frozen=True, kw_only=True)
class ClinicalDriverSpec:
    column: str
    altered: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class DriversSpec:
    mutations: MutationsSpec | None = None
    copy_number: dict[str, CopyNumberSpec] = field(default_factory=dict)
    clinical: dict[str, ClinicalDriverSpec] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class LayerSpec(TableSpec):
    role: str  # target or ptm
    preprocessing: dict[str, Any] = field(default_factory=dict)


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
    raw = yaml.safe_load(source.read_text()) or {}
    keys = _checked(raw, ManifestSpec, "the manifest", source, skip={"source"})
    drivers = _checked(keys["drivers"], DriversSpec, "drivers", source)
    return ManifestSpec(
        source=source,
        name=str(keys.get("name", source.stem)),
        data_dir=keys.get("data_dir"),
        clinical=_clinical(keys["clinical"], source),
        drivers=DriversSpec(
            mutations=_table(drivers["mutations"], MutationsSpec, "drivers.mutations", source)
            if "mutations" in drivers
            else None,
            copy_number={
                name: _table(spec, CopyNumberSpec, f"drivers.copy_number.{name}", source)
                for name, spec in _mapping(
                    drivers.get("copy_number", {}), "drivers.copy_number", source
                ).items()
            },
            clinical={
                name: _spec(spec, ClinicalDriverSpec, f"drivers.clinical.{name}", source)
                for name, spec in _mapping(drivers.get("clinical", {}), "drivers.clinical", source).items()
            },
        ),
        layers={
            name: _layer(spec, name, source)
            for name, spec in _mapping(keys["layers"], "layers", source).items()
        },
        preprocessing=dict(keys.get("preprocessing") or {}),
        endpoint=str(keys.get("endpoint", "metabolome")),
        known_effects=tuple(
            _spec(item, KnownEffect, f"known_effects[{i}]", source)
            for i, item in enumerate(keys.get("known_effects") or [])
        ),
    )


def _clinical(raw: Any, source: Path) -> ClinicalSpec:
    keys = _checked(raw, ClinicalSpec, "clinical", source)
    sample_type = (
        None
        if keys.get("sample_type") is None
        else _spec(keys["sample_type"], SampleTypeSpec, "clinical.sample_type", source)
    )
    required = {"grade": {"column", "mapping"}, "purity": {"column"}}
    columns = {
        name: _spec(keys[name], ColumnSpec, f"clinical.{name}", source, required=needed)
        for name, needed in required.items()
        if keys.get(name) is not None
    }
    return _table(keys, ClinicalSpec, "clinical", source, sample_type=sample_type, **columns)


def _layer(raw: Any, name: str, source: Path) -> LayerSpec:
    spec = _table(raw, LayerSpec, f"layers.{name}", source)
    if spec.role not in ROLES:
        raise ManifestError(
            f"role of layer '{name}' must be one of {', '.join(ROLES)}", file=source, value=spec.role
        )
    return spec


def _table(raw: Any, cls: type, where: str, source: Path, **parsed: Any) -> Any:
    """A table's specification: its keys checked, its orientation one of `ORIENTATIONS`."""
    spec = _spec(raw, cls, where, source, parsed=parsed)
    if spec.orientation not in ORIENTATIONS:
        raise ManifestError(
            f"orientation of {where} must be one of {', '.join(ORIENTATIONS)}",
            file=source,
            value=spec.orientation,
        )
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
