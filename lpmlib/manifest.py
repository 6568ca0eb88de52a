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
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from lpmlib.artifacts import sha256
from lpmlib.cohort import (
    CASE_ID,
    N_GRADES,
    Cohort,
    Layer,
    check_header,
    check_magnitude,
    dropped_frame,
    inner_join,
    read_csv_decoded,
)
from lpmlib.errors import AmbiguousValueError, DuplicateColumnError, MissingFileError, NonNumericValueError
from lpmlib.manifest_spec import (
    ClinicalDriverSpec,
    ClinicalSpec,
    ColumnSpec,
    CopyNumberSpec,
    KnownEffect,
    LayerSpec,
    ManifestError,
    ManifestSpec,
    MutationsSpec,
    SampleIdSpec,
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
    covariate: str = "grade"  # the clinical covariate's word: grade or stage
    unknown_drivers: pd.DataFrame | None = None  # True where a driver's status is unknown
    target_parents: dict[str, list[str]] = field(default_factory=dict)  # declared in the manifest
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
            features = pipeline.prepare(raw, purity)
            loadings = pipeline.loadings if pipeline.projected else None
            role = self.roles[name]
            layers[name] = Layer(name, role, pipeline.project(features), loadings, features, pipeline)  # type: ignore[arg-type]
            if name in self.normals:
                frame = self.normals[name]
                normals[name] = pipeline.transform(frame, normal_purity(pipeline, frame.index))
        return Cohort(
            self.clinical,
            self.drivers,
            layers,
            self.dropped,
            normals,
            self.grade_labels,
            covariate=self.covariate,
            unknown_drivers=self.unknown_drivers,
            target_parents=self.target_parents,
        )


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
    """A table as samples x columns, read with the manifest's separator, encoding and orientation, its
    sample identifiers mapped to the clinical file's (`sample_ids`)."""
    path = root / spec.file
    if not path.is_file():
        raise MissingFileError(f"file of {where} not found", file=path, hint=f"Named in manifest {source}.")
    hint = f"Set 'encoding' of {where} in {source} (e.g. latin-1)."
    check_header(path, spec.sep, spec.encoding, hint)
    table = read_csv_decoded(path, hint, sep=spec.sep, encoding=spec.encoding, index_col=0)
    table.index = table.index.astype(str).str.strip()
    if table.index.duplicated().any():
        duplicate = table.index[table.index.duplicated()][0]
        raise DuplicateColumnError("a row is named twice", file=path, value=duplicate)
    table = table.T if spec.orientation == "features_x_samples" else table
    table.index = _mapped_ids(pd.Index(table.index.astype(str)), spec.sample_ids, path, where)
    if table.index.duplicated().any():
        duplicate = table.index[table.index.duplicated()][0]
        raise ManifestError("two samples map to one identifier", file=path, value=duplicate)
    return table.rename_axis(CASE_ID)


def _mapped_ids(ids: pd.Index, spec: SampleIdSpec | None, path: Path, where: str) -> pd.Index:
    """Each sample identifier as the clinical file writes it: a suffix stripped, or a pattern's group."""
    if spec is None:
        return ids
    rule = f"suffix '{spec.suffix}'" if spec.suffix is not None else f"pattern '{spec.pattern}'"
    mapped = []
    for sample in ids:
        if spec.suffix is not None:
            match = sample[: -len(spec.suffix)] if sample.endswith(spec.suffix) and spec.suffix else None
        else:
            found = re.fullmatch(spec.pattern, sample)
            match = found.group(1) if found else None
        if not match:
            raise ManifestError(
                f"a sample identifier does not follow the {rule}",
                file=path,
                value=sample,
                hint=f"Check {where}.sample_ids in the manifest.",
            )
        mapped.append(match)
    return pd.Index(mapped)


def _numeric(matrix: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A layer's values as floats: blank and NA are missing; text, infinities and values beyond the
    bound on magnitude are errors naming the sample, the column and the cell."""
    numeric = matrix.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & matrix.notna()
    if bad.to_numpy().any():
        row, column = np.argwhere(bad.to_numpy())[0]
        raise NonNumericValueError(
            f"not a number (sample '{matrix.index[row]}')",
            file=path,
            column=matrix.columns[column],
            value=matrix.iat[row, column],
        )
    check_magnitude(numeric, path, matrix)
    return numeric


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


def _covariate(
    clinical: pd.DataFrame, spec: ClinicalSpec, source: Path, path: Path
) -> tuple[pd.Series, dict[int, str]]:
    """The grade's (or stage's) categories from a mapping of clinical values (anything unmapped is 0,
    unknown), and the label of each category: the clinical values mapped to it."""
    word, column_spec = spec.covariate
    labels = {0: "unknown"}
    if column_spec is None:
        return pd.Series(0, index=clinical.index, dtype=np.int64), labels
    column = column_spec.column
    if column not in clinical.columns:
        raise ManifestError(f"{word} column not in the clinical file", file=path, column=column)
    mapping = {str(k): v for k, v in column_spec.mapping.items()}
    for value, category in mapping.items():
        if not isinstance(category, int) or isinstance(category, bool) or not 1 <= category < N_GRADES:
            raise ManifestError(
                f"{word} categories must be integers 1..{N_GRADES - 1} (0 is unknown)",
                file=source,
                column=f"clinical.{word}.mapping.{value}",
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
    """A layer's preprocessing: the manifest's `preprocessing` defaults, then the layer's own keys (their
    names were checked when the manifest was parsed)."""
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


def mutation_class(change: str) -> str:
    """The class of a protein change such as 'G12D' (missense), 'C296*', 'A404Cfs*9' or 'W12X'
    (truncating), 'X123_splice' (splice), 'E746_A750del' (inframe); anything else is 'other'."""
    change = change.removeprefix("p.")
    if "splice" in change:
        return "splice"
    if "fs" in change or re.search(r"(\*|X|Ter)$", change):
        return "truncating"
    if re.fullmatch(r"[A-Z]\d+[A-Z]", change):
        return "missense"
    if re.search(r"del|ins|dup", change):
        return "inframe"
    return "other"


def _mutation_drivers(spec: MutationsSpec, root: Path, source: Path) -> pd.DataFrame:
    """Genes altered (1) or not (0) per sample: the events of `GENE_p.CHANGE` rows kept by the classes and
    hotspots asked for, collapsed to genes with max."""
    path = root / spec.file
    matrix = _read_matrix(spec, root, source, "drivers.mutations")
    names = matrix.columns.astype(str)
    genes = names.str.split("_").str[0]
    missing = [g for g in spec.genes if g not in set(genes)]
    if missing:
        raise ManifestError(
            "driver gene absent from the mutation matrix",
            file=path,
            column=missing[0],
            hint=f"Check the gene symbol(s): {', '.join(missing)}.",
        )
    keep = np.array([_counts(name, gene, spec, path) for name, gene in zip(names, genes)])
    by_gene = matrix.loc[:, keep].T.groupby(genes[keep].to_numpy()).max().T
    return (by_gene.reindex(columns=list(spec.genes)).fillna(0) > 0).astype(np.int64)


def _counts(name: str, gene: str, spec: MutationsSpec, path: Path) -> bool:
    """Whether the event `name` of `gene` counts as the gene's alteration."""
    if gene not in spec.genes:
        return False
    if not spec.classes and gene not in spec.hotspots:
        return True
    if "_p." not in name:
        raise ManifestError(
            "mutation classes and hotspots need rows named GENE_p.CHANGE; this matrix is by gene",
            file=path,
            value=name,
            hint="Remove drivers.mutations.classes and hotspots, or use a matrix of mutation events.",
        )
    change = name.split("_p.", 1)[1]
    if gene in spec.hotspots:
        return change in {h.removeprefix("p.") for h in spec.hotspots[gene]}
    return mutation_class(change) in spec.classes


def _clinical_drivers(
    clinical: pd.DataFrame, specs: dict[str, ClinicalDriverSpec], path: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drivers from clinical columns (0/1), and where each is unknown (a blank cell or an `unknown` value)."""
    altered, unknown = {}, {}
    for name, spec in specs.items():
        if spec.column not in clinical.columns:
            raise ManifestError(
                f"column of driver '{name}' not in the clinical file", file=path, column=spec.column
            )
        cells = clinical[spec.column]
        text = cells.astype(str).str.strip()
        unknown[name] = cells.isna() | (text == "") | text.isin(spec.unknown)
        altered[name] = text.isin(spec.altered) & ~unknown[name]
        stray = ~(unknown[name] | altered[name] | text.isin(spec.not_altered))
        if spec.not_altered and stray.any():
            raise AmbiguousValueError(
                f"driver '{name}' has a value that is not listed as altered, not altered or unknown",
                file=path,
                column=spec.column,
                value=cells[stray].iloc[0],
                hint=f"Add it to one of the lists of drivers.clinical.{name} in the manifest.",
            )
    return (
        pd.DataFrame(altered, index=clinical.index).astype(np.int64),
        pd.DataFrame(unknown, index=clinical.index),
    )


def _copy_number_drivers(
    specs: dict[str, CopyNumberSpec], root: Path, source: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A driver per gene whose copy-number log ratio passes a threshold (below for losses, above for
    gains), and where it is unknown (no value)."""
    columns, unknown = {}, {}
    for name, spec in specs.items():
        matrix = _read_matrix(spec, root, source, f"drivers.copy_number.{name}")
        gene = str(spec.gene)
        if gene not in matrix.columns:
            raise ManifestError(
                "driver gene absent from the copy-number matrix", file=root / spec.file, column=gene
            )
        threshold = float(spec.threshold)
        values = _numeric(matrix[[gene]], root / spec.file)[gene]
        columns[name] = ((values <= threshold) if threshold < 0 else (values >= threshold)).astype(np.int64)
        unknown[name] = values.isna()
    return pd.DataFrame(columns), pd.DataFrame(unknown)


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
    grade, grade_labels = _covariate(clinical, spec.clinical, source, clinical_path)
    purity = _purity(clinical, spec.clinical.purity, clinical_path)
    table = pd.DataFrame({"grade": grade, "purity": purity})

    driver_tables, unknown_tables = _driver_tables(spec, root, clinical.loc[tumours], clinical_path)
    drivers_found = [name for frame in driver_tables.values() for name in frame.columns]

    layers, roles, normals, pipelines = {}, {}, {}, {}
    for name, layer in spec.layers.items():
        matrix = _numeric(_read_matrix(layer, root, source, f"layers.{name}"), root / layer.file)
        layers[name], roles[name] = matrix, layer.role
        pipelines[name] = _pipeline_settings(
            spec.preprocessing, layer.preprocessing, f"layers.{name}", source
        )
        normals[name] = _layer_normals(matrix, normal_ids, layer, root, source, name)
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
    unknown = pd.concat([frame.reindex(kept) for frame in unknown_tables], axis=1)
    copy_number_files = [root / cn.file for cn in spec.drivers.copy_number.values()]
    normal_files = [root / layer.normals.file for layer in spec.layers.values() if layer.normals]
    inputs = [
        source,
        clinical_path,
        *map(Path, driver_tables),
        *copy_number_files,
        *(root / layer.file for layer in spec.layers.values()),
        *normal_files,
    ]
    return RawCohort(
        clinical=table.loc[kept],
        drivers=drivers.astype(np.int64),
        roles=roles,
        endpoint=endpoint,
        layers={name: frame.loc[kept] for name, frame in layers.items()},
        normals={name: frame for name, frame in normals.items() if len(frame)},
        dropped=dropped,
        counts={"tumours": len(tumours), "normals": len(normal_ids.union(_normal_samples(normals)))},
        grade_labels=grade_labels,
        covariate=spec.clinical.covariate[0],
        unknown_drivers=unknown.reindex(columns=drivers.columns, fill_value=False).fillna(False).astype(bool),
        target_parents={name: list(layer.parents) for name, layer in spec.layers.items() if layer.parents},
        name=spec.name,
        inputs=list(dict.fromkeys(inputs)),
        pipelines=pipelines,
        known_effects=known,
    )


def _driver_tables(
    spec: ManifestSpec, root: Path, tumours: pd.DataFrame, clinical_path: Path
) -> tuple[dict[str, pd.DataFrame], list[pd.DataFrame]]:
    """The drivers found in each file (0/1), by file, and where each driver is unknown."""
    drivers, source = spec.drivers, spec.source
    tables, unknown = {}, []
    if drivers.mutations is not None:
        tables[str(root / drivers.mutations.file)] = _mutation_drivers(drivers.mutations, root, source)
    if drivers.copy_number:
        first = next(iter(drivers.copy_number.values()))
        tables[str(root / first.file)], cn_unknown = _copy_number_drivers(drivers.copy_number, root, source)
        unknown.append(cn_unknown)
    if drivers.clinical:
        tables[str(clinical_path)], clinical_unknown = _clinical_drivers(
            tumours, drivers.clinical, clinical_path
        )
        unknown.append(clinical_unknown)
    if not tables:
        raise ManifestError(
            "no drivers: give drivers.mutations, drivers.copy_number or drivers.clinical", file=source
        )
    return tables, unknown or [pd.DataFrame(index=tumours.index)]


def _normal_samples(normals: dict[str, pd.DataFrame]) -> pd.Index:
    """Every normal sample of any layer."""
    return pd.Index([sample for frame in normals.values() for sample in frame.index]).unique()


def _layer_normals(
    matrix: pd.DataFrame, normal_ids: pd.Index, layer: LayerSpec, root: Path, source: Path, name: str
) -> pd.DataFrame:
    """A layer's normal samples: those the clinical file marks as normal, and those of its own normals
    file, on the layer's features (a feature the normals lack is missing, imputed like any other)."""
    frames = [matrix.loc[matrix.index.intersection(normal_ids)]]
    if layer.normals is not None:
        table = dataclasses.replace(layer, file=layer.normals.file, sample_ids=layer.normals.sample_ids)
        where = f"layers.{name}.normals"
        own = _numeric(_read_matrix(table, root, source, where), root / layer.normals.file)
        frames.append(own.reindex(columns=matrix.columns))
    normals = pd.concat(frames)
    if normals.index.duplicated().any():
        raise ManifestError(
            f"a normal sample of layer '{name}' is given twice",
            value=normals.index[normals.index.duplicated()][0],
            file=source,
        )
    return normals
