"""Real cohorts described by a manifest: raw CPTAC-style files in, aligned raw layers out.

A manifest (YAML) names the files of a cohort and how to read them: separator, encoding, orientation
(features x samples or samples x features), which samples are tumours and which normals, drivers from
a mutation matrix (collapsed to gene level), from clinical fields (such as MSI status) or from
copy-number thresholds, the grade column and its mapping, purity, each layer's role and the endpoint
of Q6. The result is a `RawCohort`: tumours aligned on one sample index, layers still raw (missing
values kept), normals kept apart. Preprocessing to model-ready values happens per fold
(`lpmlib.preprocess.RawLayerPipeline`), so that held-out patients never inform it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from lpmlib.artifacts import sha256
from lpmlib.cohort import CASE_ID, N_GRADES, Cohort, Layer, dropped_frame, inner_join
from lpmlib.errors import MissingFileError
from lpmlib.manifest_spec import (
    ClinicalDriverSpec,
    ColumnSpec,
    CopyNumberSpec,
    KnownEffect,
    ManifestError,
    MutationsSpec,
    SampleTypeSpec,
    TableSpec,
    parse_manifest,
)
from lpmlib.preprocess import PipelineSettings, RawLayerPipeline

UNNAMED_GRADES = {0: "unknown"} | {k: f"grade {k}" for k in range(1, N_GRADES)}


@dataclass
class RawCohort:
    """Tumours aligned across clinical data, drivers and raw layers; normal samples kept apart."""

    clinical: pd.DataFrame  # index: sample; columns grade (0 = unknown), purity (float or NaN)
    drivers: pd.DataFrame  # 0/1
    layers: dict[str, pd.DataFrame]  # raw samples x features, missing values kept
    roles: dict[str, str]
    normals: dict[str, pd.DataFrame]  # the normal samples of each layer that has them
    endpoint: str
    dropped: pd.DataFrame = field(default_factory=lambda: dropped_frame([]))
    counts: dict[str, int] = field(default_factory=dict)  # tumours and normals found in the clinical file
    grade_labels: dict[int, str] = field(default_factory=lambda: dict(UNNAMED_GRADES))
    name: str = "a cohort"  # how the book names it
    inputs: list[Path] = field(default_factory=list)  # the manifest and every file it reads
    pipelines: dict[str, PipelineSettings] = field(default_factory=dict)  # per layer; absent: the defaults
    known_effects: list[KnownEffect] = field(default_factory=list)  # biology the reversals should reproduce

    def input_hashes(self) -> dict[str, str]:
        """SHA-256 of the manifest and of every file it reads, by path."""
        return {os.path.normpath(path): sha256(path) for path in self.inputs}

    @property
    def n_patients(self) -> int:
        return len(self.clinical)

    def fold_cohort(self, train_rows: np.ndarray, settings: PipelineSettings | None = None) -> Cohort:
        """Model-ready values of every patient, each layer's pipeline fitted on `train_rows` only.

        `settings` applies to every layer; None takes each layer's settings from the manifest.
        Held-out patients are transformed with the training fold's statistics, so nothing about them
        reaches the fit; the loadings map components back to the selected original features. Normal
        samples are transformed by the same pipeline (never fitted on them; see `normal_purity`).
        """
        # One BLAS thread: multi-threaded SVDs round differently with the number of threads (the views,
        # and the checkpoints keyed on them, must not depend on the machine), and on matrices this
        # small one thread is as fast, and immune to a busy second core.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fold_cohort(train_rows, settings)

    def _fold_cohort(self, train_rows: np.ndarray, settings: PipelineSettings | None) -> Cohort:
        layers, normals = {}, {}
        purity = self.clinical["purity"] if self.clinical["purity"].notna().any() else None
        for name, raw in self.layers.items():
            chosen = settings or self.pipelines.get(name, PipelineSettings())
            pipeline = RawLayerPipeline(chosen).fit(raw.iloc[train_rows], purity)
            values = pipeline.transform(raw, purity)
            loadings = pipeline.loadings if pipeline.projected else None
            layers[name] = Layer(name, self.roles[name], values, loadings)  # type: ignore[arg-type]
            if name in self.normals:
                frame = self.normals[name]
                normals[name] = pipeline.transform(frame, normal_purity(pipeline, frame.index))
        return Cohort(self.clinical, self.drivers, layers, self.dropped, normals, self.grade_labels)


def normal_purity(pipeline: RawLayerPipeline, samples: pd.Index) -> pd.Series | None:
    """The purity at which normal samples are transformed: the training tumours' mean purity, where
    the purity correction is zero, so normal tissue is left unadjusted.

    Normals contain no cancer cells, so their purity is 0, not unknown: imputing the tumours' median
    (what a NaN gets) would be wrong. But the correction x - b (p - mean) at p = 0 would add b * mean,
    the training tumours' average cancer-cell signal, to normal tissue (extrapolating the fit below
    the tumours' purity range) and so make normals look like an average tumour. The correction
    removes differences in cancer-cell content among tumours; it does not apply to normal tissue.
    """
    return None if pipeline.purity_mean_ is None else pd.Series(pipeline.purity_mean_, index=samples)


def _read_matrix(spec: TableSpec, root: Path, source: Path, where: str) -> pd.DataFrame:
    """A table as samples x columns, read with the manifest's separator, encoding and orientation."""
    path = root / spec.file
    if not path.is_file():
        raise MissingFileError(f"file of {where} not found", file=path, hint=f"Named in manifest {source}.")
    try:
        table = pd.read_csv(path, sep=spec.sep, encoding=spec.encoding, index_col=0)
    except UnicodeDecodeError as error:
        raise ManifestError(
            f"cannot be read as {spec.encoding} ({error.reason} at byte {error.start})",
            file=path,
            hint=f"Set 'encoding' of {where} in {source} (e.g. latin-1).",
        ) from error
    except LookupError as error:
        raise ManifestError(f"unknown encoding of {where}", file=source, value=spec.encoding) from error
    table = table.T if spec.orientation == "features_x_samples" else table
    table.index = table.index.astype(str).str.strip()
    if table.index.duplicated().any():
        duplicate = table.index[table.index.duplicated()][0]
        raise ManifestError("duplicate sample identifier", file=path, value=duplicate)
    return table.rename_axis(CASE_ID)


def _sample_types(
    clinical: pd.DataFrame, spec: SampleTypeSpec | None, path: Path
) -> tuple[pd.Index, pd.Index]:
    """The tumour and the normal samples of the clinical file (all tumours without a sample type)."""
    if spec is None:
        return clinical.index, pd.Index([])
    if spec.column not in clinical.columns:
        raise ManifestError("sample-type column not in the clinical file", file=path, column=spec.column)
    values = clinical[spec.column].astype(str)
    return clinical.index[values.isin(spec.tumour)], clinical.index[values.isin(spec.normal)]


def _grade(
    clinical: pd.DataFrame, spec: ColumnSpec | None, source: Path, path: Path
) -> tuple[pd.Series, dict[int, str]]:
    """Grade categories from a mapping of clinical values (anything unmapped is 0, unknown), and
    the label of each category: the clinical values mapped to it."""
    labels = {0: "unknown"}
    if spec is None:
        return pd.Series(0, index=clinical.index, dtype=np.int64), labels
    column = spec.column
    if column not in clinical.columns:
        raise ManifestError("grade column not in the clinical file", file=path, column=column)
    mapping = {str(k): v for k, v in spec.mapping.items()}
    for value, category in mapping.items():
        if not isinstance(category, int) or isinstance(category, bool) or not 1 <= category < N_GRADES:
            raise ManifestError(
                f"grade categories must be integers 1..{N_GRADES - 1} (0 is unknown)",
                file=source,
                column=f"clinical.grade.mapping.{value}",
                value=category,
            )
        labels[category] = f"{labels[category]}; {value}" if category in labels else value
    return clinical[column].astype(str).map(mapping).fillna(0).astype(np.int64), dict(sorted(labels.items()))


def _purity(clinical: pd.DataFrame, spec: ColumnSpec | None, path: Path) -> pd.Series:
    """Purity as a float (numeric column, or categories mapped to numbers); NaN where unknown or absent."""
    if spec is None:
        return pd.Series(np.nan, index=clinical.index)
    if spec.column not in clinical.columns:
        raise ManifestError("purity column not in the clinical file", file=path, column=spec.column)
    if spec.mapping is not None:
        return clinical[spec.column].astype(str).map({str(k): float(v) for k, v in spec.mapping.items()})
    return pd.to_numeric(clinical[spec.column], errors="coerce")


def _pipeline_settings(defaults: dict, own: dict, where: str, source: Path) -> PipelineSettings:
    """A layer's preprocessing: the manifest's `preprocessing` defaults, then the layer's own keys."""
    names = {f.name for f in dataclasses.fields(PipelineSettings)}
    for key in {**defaults, **own}:
        if key not in names:
            raise ManifestError(
                f"unknown preprocessing setting of {where}",
                file=source,
                column=key,
                hint=f"Settings: {', '.join(sorted(names))}.",
            )
    try:
        return PipelineSettings(**{**defaults, **own})
    except ValueError as error:
        raise ManifestError(f"bad preprocessing of {where}: {error}", file=source) from error


def _known_effect(
    effect: KnownEffect, index: int, drivers: list[str], layers: dict[str, pd.DataFrame], source: Path
) -> KnownEffect:
    """One entry of `known_effects`, checked against the cohort's drivers, layers and features."""
    where = f"known_effects[{index}]"
    effect = KnownEffect(*(str(getattr(effect, f.name)) for f in dataclasses.fields(KnownEffect)))
    problems = {
        "driver": (effect.driver, drivers),
        "layer": (effect.layer, list(layers)),
        "altered": (effect.altered, ["higher", "lower"]),
    }
    for key, (value, valid) in problems.items():
        if value not in valid:
            raise ManifestError(
                f"unknown {key} in {where}", file=source, value=value, hint=f"Valid: {', '.join(valid)}."
            )
    if effect.feature not in layers[effect.layer].columns:
        message = f"feature of {where} is not in layer '{effect.layer}'"
        raise ManifestError(message, file=source, value=effect.feature)
    return effect


def _mutation_drivers(spec: MutationsSpec, root: Path, source: Path) -> pd.DataFrame:
    """Genes altered (1) or not (0) per sample, collapsing `GENE_p.CHANGE` rows to genes with max."""
    matrix = _read_matrix(spec, root, source, "drivers.mutations")
    genes = matrix.columns.astype(str).str.split("_").str[0]
    by_gene = matrix.T.groupby(genes.to_numpy()).max().T
    wanted = list(spec.genes)
    missing = [g for g in wanted if g not in by_gene.columns]
    if missing:
        raise ManifestError(
            "driver gene absent from the mutation matrix",
            file=root / spec.file,
            column=missing[0],
            hint=f"Check the gene symbol(s): {', '.join(missing)}.",
        )
    return (by_gene[wanted].fillna(0) > 0).astype(np.int64)


def _clinical_drivers(
    clinical: pd.DataFrame, specs: dict[str, ClinicalDriverSpec], path: Path
) -> pd.DataFrame:
    columns = {}
    for name, spec in specs.items():
        if spec.column not in clinical.columns:
            raise ManifestError(
                f"column of driver '{name}' not in the clinical file", file=path, column=spec.column
            )
        columns[name] = clinical[spec.column].astype(str).isin(spec.altered).astype(np.int64)
    return pd.DataFrame(columns, index=clinical.index)


def _copy_number_drivers(specs: dict[str, CopyNumberSpec], root: Path, source: Path) -> pd.DataFrame:
    """A driver per gene whose copy-number log ratio passes a threshold (below for losses, above for
    gains)."""
    columns = {}
    for name, spec in specs.items():
        matrix = _read_matrix(spec, root, source, f"drivers.copy_number.{name}")
        gene = str(spec.gene)
        if gene not in matrix.columns:
            raise ManifestError(
                "driver gene absent from the copy-number matrix", file=root / spec.file, column=gene
            )
        threshold = float(spec.threshold)
        values = matrix[gene]
        columns[name] = ((values <= threshold) if threshold < 0 else (values >= threshold)).astype(np.int64)
    return pd.DataFrame(columns)


def read_manifest(path: str | Path, data_dir: str | Path | None = None) -> RawCohort:
    """Read a cohort described by a manifest (parsed once, every key checked: `parse_manifest`);
    `data_dir` overrides the manifest's own `data_dir`.

    Tumours present in every file are kept; the others are listed in `dropped` with the files they
    were missing from. Input files are only read.
    """
    spec = parse_manifest(path)
    source = spec.source
    if data_dir is None and spec.data_dir is None:
        raise ManifestError("missing key 'data_dir' in the manifest", file=source)
    root = Path(data_dir) if data_dir is not None else source.parent / spec.data_dir

    clinical = _read_matrix(spec.clinical, root, source, "clinical")
    clinical_path = root / spec.clinical.file
    tumours, normal_ids = _sample_types(clinical, spec.clinical.sample_type, clinical_path)
    grade, grade_labels = _grade(clinical, spec.clinical.grade, source, clinical_path)
    purity = _purity(clinical, spec.clinical.purity, clinical_path)
    table = pd.DataFrame({"grade": grade, "purity": purity})

    drivers_spec, driver_tables = spec.drivers, {}
    if drivers_spec.mutations is not None:
        driver_tables[str(root / drivers_spec.mutations.file)] = _mutation_drivers(
            drivers_spec.mutations, root, source
        )
    if drivers_spec.copy_number:
        first = next(iter(drivers_spec.copy_number.values()))
        driver_tables[str(root / first.file)] = _copy_number_drivers(drivers_spec.copy_number, root, source)
    if drivers_spec.clinical:
        driver_tables[str(clinical_path)] = _clinical_drivers(
            clinical.loc[tumours], drivers_spec.clinical, clinical_path
        )
    if not driver_tables:
        raise ManifestError(
            "no drivers: give drivers.mutations, drivers.copy_number or drivers.clinical", file=source
        )
    drivers_found = [name for frame in driver_tables.values() for name in frame.columns]

    layers, roles, normals, pipelines = {}, {}, {}, {}
    for name, layer in spec.layers.items():
        matrix = _read_matrix(layer, root, source, f"layers.{name}").apply(pd.to_numeric, errors="coerce")
        layers[name], roles[name] = matrix, layer.role
        pipelines[name] = _pipeline_settings(
            spec.preprocessing, layer.preprocessing, f"layers.{name}", source
        )
        normals[name] = matrix.loc[matrix.index.intersection(normal_ids)]
    endpoint = spec.endpoint
    if endpoint not in layers:
        raise ManifestError(
            "the endpoint is not a layer of the manifest",
            file=source,
            column="endpoint",
            value=endpoint,
            hint=f"Layers: {', '.join(layers)}.",
        )

    known = [
        _known_effect(item, i, drivers_found, layers, source) for i, item in enumerate(spec.known_effects)
    ]

    tables = {f"{clinical_path} (tumours)": pd.Index(tumours)}
    tables |= {file: frame.index for file, frame in driver_tables.items()}
    tables |= {
        str(root / spec.layers[name].file): frame.index.intersection(tumours)
        for name, frame in layers.items()
    }
    kept, dropped = inner_join(tables)
    drivers = pd.concat([frame.reindex(kept) for frame in driver_tables.values()], axis=1)
    copy_number_files = [root / cn.file for cn in drivers_spec.copy_number.values()]
    inputs = [
        source,
        clinical_path,
        *map(Path, driver_tables),
        *copy_number_files,
        *(root / layer.file for layer in spec.layers.values()),
    ]
    return RawCohort(
        clinical=table.loc[kept],
        drivers=drivers.astype(np.int64),
        roles=roles,
        endpoint=endpoint,
        layers={name: frame.loc[kept] for name, frame in layers.items()},
        normals={name: frame for name, frame in normals.items() if len(frame)},
        dropped=dropped,
        counts={"tumours": len(tumours), "normals": len(normal_ids)},
        grade_labels=grade_labels,
        name=spec.name,
        inputs=list(dict.fromkeys(inputs)),
        pipelines=pipelines,
        known_effects=known,
    )
