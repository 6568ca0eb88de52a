"""Cohorts described by a manifest: errors a user can act on, and the public CPTAC UCEC cohort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lpmlib import workflow
from lpmlib.artifacts import folder_hashes, sha256
from lpmlib.cv import model_config
from lpmlib.errors import CohortError, EncodingError, MissingFileError
from lpmlib.manifest import ManifestError, mutation_class, read_manifest
from lpmlib.manifest_spec import parse_manifest
from lpmlib.preprocess import PipelineSettings

PROJECT = Path(__file__).resolve().parents[1]
UCEC = PROJECT.parent / "shared" / "data" / "cptac-ucec"


def write_small_cohort(folder: Path) -> Path:
    """Eight tumours and two normals in CPTAC-like files, and a manifest describing them."""
    rng = np.random.default_rng(0)
    samples = [f"S{i:02d}" for i in range(10)]
    folder.mkdir()
    clinical = pd.DataFrame(
        {
            "type": ["Tumor"] * 8 + ["Normal"] * 2,
            "grade": ["G1", "G2", "G3", "", "G2", "G1", "G3", "G2", "", ""],
            "msi": ["MSI-H", "MSS"] * 4 + ["", ""],
            "purity": ["Ségolène"]
            + list(rng.uniform(0.3, 0.9, 9).round(2).astype(str)),  # one non-ASCII cell
        },
        index=pd.Index(samples, name="idx"),
    )
    clinical.to_csv(folder / "clinical.txt", sep="\t", encoding="latin-1")
    mutations = pd.DataFrame(
        rng.integers(0, 2, (3, 8)),
        columns=samples[:8],
        index=["PTEN_p.R130G", "PTEN_p.K267fs", "TP53_p.R273H"],
    )
    mutations.to_csv(folder / "mutations.tsv", sep="\t")
    for name in ("prot", "phos"):
        values = pd.DataFrame(rng.normal(size=(5, 10)), columns=samples, index=[f"G{j}" for j in range(5)])
        values.iloc[0, 3] = np.nan
        values.to_csv(folder / f"{name}.tsv", sep="\t")
    manifest = {
        "data_dir": ".",
        "clinical": {
            "file": "clinical.txt",
            "encoding": "latin-1",
            "sample_type": {"column": "type", "tumour": ["Tumor"], "normal": ["Normal"]},
            "grade": {"column": "grade", "mapping": {"G1": 1, "G2": 2, "G3": 3}},
        },
        "drivers": {
            "mutations": {
                "file": "mutations.tsv",
                "orientation": "features_x_samples",
                "genes": ["PTEN", "TP53"],
            },
            "clinical": {"MSI-H": {"column": "msi", "altered": ["MSI-H"]}},
        },
        "layers": {
            "prot": {"file": "prot.tsv", "orientation": "features_x_samples", "role": "target"},
            "phos": {"file": "phos.tsv", "orientation": "features_x_samples", "role": "ptm"},
        },
        "endpoint": "prot",
    }
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def edited(path: Path, edit) -> Path:
    manifest = yaml.safe_load(path.read_text())
    edit(manifest)
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_a_small_manifest_reads_tumours_drivers_layers_and_normals(tmp_path: Path) -> None:
    cohort = read_manifest(write_small_cohort(tmp_path / "c"))
    assert cohort.counts == {"tumours": 8, "normals": 2} and cohort.n_patients == 8
    assert list(cohort.drivers.columns) == ["PTEN", "TP53", "MSI-H"]
    assert cohort.drivers["MSI-H"].tolist() == [1, 0] * 4
    assert cohort.clinical["grade"].tolist() == [1, 2, 3, 0, 2, 1, 3, 2]
    assert cohort.layers["prot"].shape == (8, 5) and np.isnan(cohort.layers["prot"].loc["S03", "G0"])
    assert set(cohort.normals) == {"prot", "phos"} and len(cohort.normals["prot"]) == 2
    assert cohort.roles == {"prot": "target", "phos": "ptm"} and cohort.endpoint == "prot"
    assert cohort.grade_labels == {0: "unknown", 1: "G1", 2: "G2", 3: "G3"} and cohort.name == "manifest"
    assert {Path(p).name for p in cohort.input_hashes()} == {
        "manifest.yaml",
        "clinical.txt",
        "mutations.tsv",
        "prot.tsv",
        "phos.tsv",
    }


def write_split_cohort(folder: Path) -> Path:
    """A colon-like cohort: tumours and normals in separate folders (normal IDs carry '.N'), a clinical
    file of attributes x samples with no sample type, a stage, and an MSI status with blanks."""
    rng = np.random.default_rng(1)
    tumours = [f"C{i:02d}" for i in range(12)]
    (folder / "tumour").mkdir(parents=True)
    (folder / "normal").mkdir()
    clinical = pd.DataFrame(
        {
            "Stage": ["Stage I", "Stage II", "Stage III", "Stage IV"] * 3,
            "MSI": ["MSI-H", "MSS", ""] * 4,
        },
        index=pd.Index(tumours, name="attrib_name"),
    ).T
    clinical.to_csv(folder / "clinical.tsv", sep="\t")
    events = ["KRAS_p.G12D", "KRAS_p.A146T", "TP53_p.R175H", "TP53_p.R213*", "APC_p.E1309fs"]
    mutations = pd.DataFrame(0, index=events, columns=tumours)
    mutations.loc["KRAS_p.G12D", ["C00", "C01"]] = 1
    mutations.loc["KRAS_p.A146T", ["C02"]] = 1
    mutations.loc["TP53_p.R175H", ["C03", "C04"]] = 1
    mutations.loc["TP53_p.R213*", ["C05"]] = 1
    mutations.loc["APC_p.E1309fs", ["C06"]] = 1
    mutations.to_csv(folder / "mutations.tsv", sep="\t")
    for name in ("rna", "protein", "phospho"):
        genes = [f"G{j}" for j in range(6)]
        pd.DataFrame(rng.normal(size=(6, 12)), index=genes, columns=tumours).to_csv(
            folder / "tumour" / f"{name}.tsv", sep="\t"
        )
        normals = [f"{t}.N" for t in tumours[:4]]
        pd.DataFrame(rng.normal(size=(5, 4)), index=genes[:5], columns=normals).to_csv(
            folder / "normal" / f"{name}.tsv", sep="\t"
        )
    layer = lambda name, role, **more: {  # noqa: E731
        "file": f"tumour/{name}.tsv",
        "orientation": "features_x_samples",
        "role": role,
        "normals": {"file": f"normal/{name}.tsv", "sample_ids": {"suffix": ".N"}},
        **more,
    }
    manifest = {
        "data_dir": ".",
        "clinical": {
            "file": "clinical.tsv",
            "orientation": "features_x_samples",
            "stage": {
                "column": "Stage",
                "mapping": {"Stage I": 1, "Stage II": 2, "Stage III": 3, "Stage IV": 4},
            },
        },
        "drivers": {
            "mutations": {
                "file": "mutations.tsv",
                "orientation": "features_x_samples",
                "genes": ["KRAS", "TP53", "APC"],
                "classes": ["missense"],
                "hotspots": {"KRAS": ["G12D"]},
            },
            "clinical": {"MSI-H": {"column": "MSI", "altered": ["MSI-H"], "not_altered": ["MSS"]}},
        },
        "layers": {
            "rna": layer("rna", "target"),
            "protein": layer("protein", "target", parents=["rna"]),
            "phospho": layer("phospho", "ptm"),
        },
        "endpoint": "protein",
    }
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def test_a_cohort_with_normals_apart_a_stage_and_unknown_msi_is_read_as_described(tmp_path: Path) -> None:
    cohort = read_manifest(write_split_cohort(tmp_path / "c"))
    assert cohort.counts == {"tumours": 12, "normals": 4} and cohort.n_patients == 12
    assert cohort.covariate == "stage" and cohort.clinical["grade"].tolist() == [1, 2, 3, 4] * 3
    assert cohort.grade_labels == {0: "unknown", 1: "Stage I", 2: "Stage II", 3: "Stage III", 4: "Stage IV"}
    # KRAS: the G12D hotspot alone; TP53: missense alone; APC: its frameshift is not missense
    assert cohort.drivers.index[cohort.drivers["KRAS"] == 1].tolist() == ["C00", "C01"]
    assert cohort.drivers.index[cohort.drivers["TP53"] == 1].tolist() == ["C03", "C04"]
    assert cohort.drivers["APC"].sum() == 0
    # a blank MSI status is unknown: not a carrier, not a non-carrier
    assert cohort.drivers["MSI-H"].tolist() == [1, 0, 0] * 4
    assert cohort.unknown_drivers["MSI-H"].tolist() == [False, False, True] * 4
    assert not cohort.unknown_drivers.drop(columns="MSI-H").any().any()
    assert list(cohort.normals) == ["rna", "protein", "phospho"]
    assert cohort.normals["protein"].index.tolist() == ["C00", "C01", "C02", "C03"]
    assert cohort.normals["protein"]["G5"].isna().all()  # a feature the normals lack is missing
    view = cohort.fold_cohort(np.arange(8))
    assert view.covariate == "stage" and view.target_parents == {"protein": ["rna"]}
    assert view.non_carriers("MSI-H").tolist() == [False, True, False] * 4
    assert model_config(view, latent_dim=8, vae_latent_dim=4).target_parents == {"protein": ["rna"]}
    assert len(view.normals["protein"]) == 4
    prevalence = workflow.driver_prevalence(view)
    assert prevalence.loc["MSI-H", ["carriers", "unknown"]].tolist() == [4, 4]
    assert prevalence.loc["MSI-H", "prevalence"] == 0.5  # 4 carriers of the 8 tumours of known status
    covariate = workflow.covariate_counts(view)
    assert covariate.index.name == "stage category" and covariate.loc["Stage IV", "patients"] == 3


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["clinical"].update(grade=m["clinical"]["stage"]), "both a grade and a stage"),
        (
            lambda m: m["drivers"]["clinical"]["MSI-H"].update(not_altered=["MSI-L"]),
            "value 'MSS': driver 'MSI-H' has a value that is not listed as altered, not altered or unknown",
        ),
        (lambda m: m["drivers"]["mutations"].update(classes=["nonsense"]), "value 'nonsense'"),
        (lambda m: m["drivers"]["mutations"].update(hotspots={"BRAF": ["V600E"]}), "value 'BRAF'"),
        (lambda m: m["layers"]["protein"].update(parents=["phospho"]), "a parent of layer 'protein'"),
        (lambda m: m["layers"]["rna"].update(parents=["protein"]), "the layers' parents form a cycle"),
        (
            lambda m: m["layers"]["rna"]["normals"].update(sample_ids={"suffix": "-N"}),
            "value 'C00.N': a sample identifier does not follow the suffix '-N'",
        ),
        (
            lambda m: m["layers"]["rna"]["normals"].update(
                sample_ids={"pattern": "(C\\d+)\\.N", "suffix": ".N"}
            ),
            "needs exactly one of 'suffix' and 'pattern'",
        ),
    ],
)
def test_the_new_manifest_keys_are_checked(tmp_path: Path, edit, message: str) -> None:
    path = edited(write_split_cohort(tmp_path / "c"), edit)
    before = folder_hashes(tmp_path / "c")
    with pytest.raises(CohortError) as info:
        read_manifest(path)
    assert message in str(info.value)
    assert folder_hashes(tmp_path / "c") == before


def test_a_sample_id_pattern_maps_normals_to_their_tumours(tmp_path: Path) -> None:
    path = edited(
        write_split_cohort(tmp_path / "c"),
        lambda m: m["layers"]["rna"]["normals"].update(sample_ids={"pattern": "(C\\d+)\\.N"}),
    )
    assert read_manifest(path).normals["rna"].index.tolist() == ["C00", "C01", "C02", "C03"]


@pytest.mark.parametrize(
    ("change", "kind"),
    [("G12D", "missense"), ("R213*", "truncating"), ("A404Cfs*9", "truncating"), ("W12X", "truncating")]
    + [("X123_splice", "splice"), ("E746_A750del", "inframe"), ("*123Qext*?", "other")],
)
def test_mutation_classes_are_read_from_the_protein_change(change: str, kind: str) -> None:
    assert mutation_class(change) == kind


def test_preprocessing_is_set_for_all_layers_and_per_layer(tmp_path: Path) -> None:
    path = edited(
        write_small_cohort(tmp_path / "c"),
        lambda m: (
            m.update(preprocessing={"n_components": 3, "top_variance": 4}),
            m["layers"]["phos"].update(preprocessing={"n_components": None}),
        ),
    )
    cohort = read_manifest(path)
    assert cohort.pipelines["prot"] == PipelineSettings(n_components=3, top_variance=4)
    assert cohort.pipelines["phos"] == PipelineSettings(n_components=None, top_variance=4)
    view = cohort.fold_cohort(np.arange(6))
    assert (
        list(view.layers["prot"].values.columns) == ["PC1", "PC2", "PC3"]
        and view.layers["prot"].loadings is not None
    )
    assert view.layers["phos"].values.shape[1] == 4 and view.layers["phos"].loadings is None


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda m: m.pop("layers"), ManifestError, "missing key 'layers'"),
        (  # a misspelt key is an error naming its path and the closest valid key, never ignored
            lambda m: m["layers"]["prot"].update(orientaton="features_x_samples"),
            ManifestError,
            "unknown key 'orientaton' in layers.prot. Did you mean 'orientation'?",
        ),
        (
            lambda m: m.update(known_effect=[]),
            ManifestError,
            "unknown key 'known_effect' in the manifest. Did you mean 'known_effects'?",
        ),
        (
            lambda m: m["clinical"]["sample_type"].update(tumor=["Tumor"]),
            ManifestError,
            "Did you mean 'tumour'?",
        ),
        (lambda m: m["drivers"].update(mutation={}), ManifestError, "unknown key 'mutation' in drivers"),
        (lambda m: m["layers"].update(prot=["prot.tsv"]), ManifestError, "layers.prot must be a mapping"),
        (lambda m: m["layers"]["prot"].update(file="nope.tsv"), MissingFileError, "nope.tsv"),
        (
            lambda m: m["drivers"]["mutations"].update(genes=["PTEN", "KRASS"]),
            ManifestError,
            "column 'KRASS'",
        ),
        (lambda m: m["clinical"].update(encoding="utf-8"), EncodingError, "cannot be read as utf-8"),
        (lambda m: m["layers"]["phos"].update(role="input"), ManifestError, "value 'input'"),
        (lambda m: m["layers"]["phos"].update(orientation="wide"), ManifestError, "value 'wide'"),
        (lambda m: m.update(endpoint="metabolome"), ManifestError, "value 'metabolome'"),
        (lambda m: m["clinical"]["grade"]["mapping"].update(G3=7), ManifestError, "value 7"),
        (
            lambda m: m.update(preprocessing={"n_pcs": 3}),
            ManifestError,
            "unknown key 'n_pcs' in preprocessing",
        ),
        (lambda m: m.update(preprocessing={"top_variance": 0}), ManifestError, "top_variance"),
        (
            lambda m: m.update(
                known_effects=[{"driver": "KRAS", "layer": "prot", "feature": "G1", "altered": "lower"}]
            ),
            ManifestError,
            "value 'KRAS'",
        ),
        (
            lambda m: m.update(
                known_effects=[{"driver": "TP53", "layer": "prot", "feature": "TP53", "altered": "lower"}]
            ),
            ManifestError,
            "value 'TP53'",
        ),
        (
            lambda m: m.update(
                known_effects=[{"driver": "TP53", "layer": "prot", "feature": "G1", "altered": "up"}]
            ),
            ManifestError,
            "value 'up'",
        ),
    ],
)
def test_manifest_errors_name_the_problem_and_leave_files_untouched(
    tmp_path: Path, edit, error, message
) -> None:
    path = edited(write_small_cohort(tmp_path / "c"), edit)
    before = {p.name: sha256(p) for p in path.parent.iterdir()}
    with pytest.raises(error) as info:
        read_manifest(path)
    assert isinstance(info.value, CohortError) and message in str(info.value)
    assert {p.name: sha256(p) for p in path.parent.iterdir()} == before


needs_ucec = pytest.mark.skipif(not UCEC.is_dir(), reason=f"the public CPTAC UCEC data are not at {UCEC}")


@needs_ucec
def test_ucec_ingestion_matches_the_data_readme() -> None:
    hashes = dict(
        line.split()[::-1] for line in (UCEC / "SHA256SUMS").read_text().splitlines() if line.strip()
    )
    cohort = read_manifest(PROJECT / "examples" / "ucec.yaml")
    assert cohort.counts == {"tumours": 104, "normals": 49}
    # tumours lacking miRNA (13) or mutation calls (1) are dropped, each with the file it was missing from
    assert cohort.n_patients == 90 and len(cohort.dropped) == 14
    assert cohort.dropped["missing_from"].str.contains("miRNA.cct.gz").sum() == 14
    assert cohort.drivers["PTEN"].mean() == pytest.approx(0.76, abs=0.05)  # README: PTEN 76% of tumours
    assert cohort.drivers["MSI-H"].sum() / cohort.n_patients == pytest.approx(26 / 104, abs=0.03)
    assert cohort.layers["protein"].shape == (90, 10_999) and len(cohort.normals["protein"]) == 49
    assert cohort.endpoint == "protein" and cohort.roles["acetyl"] == "ptm"
    assert all(sha256(UCEC / name) == digest for name, digest in hashes.items() if (UCEC / name).is_file())


def test_a_fold_cohort_is_fitted_on_training_patients_only(tmp_path: Path) -> None:
    raw = read_manifest(write_small_cohort(tmp_path / "c"))
    settings = PipelineSettings(n_components=3, top_variance=4)
    train = np.arange(6)
    first = raw.fold_cohort(train, settings)
    for layer in raw.layers.values():
        layer.iloc[6:] = layer.iloc[6:] * 100 + 7  # held-out patients change beyond recognition
    second = raw.fold_cohort(train, settings)
    for name in raw.layers:
        pd.testing.assert_frame_equal(
            first.layers[name].values.iloc[train], second.layers[name].values.iloc[train]
        )
        pd.testing.assert_frame_equal(first.layers[name].loadings, second.layers[name].loadings)
    assert first.ptm_names == ["phos"] and first.layers["prot"].values.shape == (8, 3)
    assert not first.layers["prot"].values.iloc[6:].equals(second.layers["prot"].values.iloc[6:])


@needs_ucec
def test_ucec_fold_cohort_maps_components_back_to_proteins() -> None:
    raw = read_manifest(PROJECT / "examples" / "ucec.yaml")
    cohort = raw.fold_cohort(np.arange(72))  # the first 72 of 90 tumours as a training fold
    protein = cohort.layers["protein"]
    assert protein.values.shape == (90, 50) and protein.loadings.shape == (50, 5000)
    assert {"ARID1A", "CTNNB1", "TP53"} <= set(protein.loadings.columns)
    assert np.isfinite(protein.values.to_numpy()).all()


@needs_ucec
def test_cross_validation_on_ucec_preprocesses_each_fold_on_its_own_training_patients(tmp_path: Path) -> None:
    from lpmlib.cv import load_folds, run_cv
    from lpmlib.performance import q0_per_fold
    from lpmlib.questions.knockout import q1_gene_knockout
    from lpmlib.train import TrainSettings

    raw = read_manifest(PROJECT / "examples" / "ucec.yaml")
    pipeline = PipelineSettings(n_components=8, top_variance=400)
    small = {"latent_dim": 16, "vae_latent_dim": 8}
    folds = run_cv(raw, tmp_path, TrainSettings(epochs=2), n_folds=3, log=None, pipeline=pipeline, **small)
    views = [fold.cohort for fold in folds]
    assert all(view is not None and view.layers["protein"].values.shape == (90, 8) for view in views)
    assert not views[0].layers["protein"].loadings.equals(views[1].layers["protein"].loadings)
    q0 = q0_per_fold(folds)
    assert set(q0["layer"]) == {"protein", "miRNA", "phospho", "acetyl"} and q0["value"].notna().all()
    effects = q1_gene_knockout(folds, gene="TP53")["q1_feature_effects"]
    assert set(effects["layer"]) == {"protein", "miRNA", "phospho", "acetyl"}
    assert (
        effects["feature"]
        .isin(
            raw.layers["protein"]
            .columns.union(raw.layers["acetyl"].columns)
            .union(raw.layers["phospho"].columns)
            .union(raw.layers["miRNA"].columns)
        )
        .all()
    )
    reloaded = load_folds(raw, tmp_path, n_folds=3, pipeline=pipeline)
    for fold, again in zip(folds, reloaded):
        np.testing.assert_array_equal(fold.predictions["all"]["protein"], again.predictions["all"]["protein"])


@pytest.mark.parametrize("example", sorted((PROJECT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_manifest_parses_and_reads_where_its_data_are(example: Path) -> None:
    spec = parse_manifest(example)
    folder = example.parent / spec.data_dir
    assert spec.name and spec.endpoint in spec.layers
    if folder.is_dir():
        cohort = read_manifest(example)
        assert cohort.n_patients >= 50 and set(cohort.layers) == set(spec.layers)
