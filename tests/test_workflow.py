"""A run on a cohort manifest, as the notebooks drive it: the cohort, per-fold training, the
questions, and the chapters and table of contents of its book."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_manifest import edited, write_small_cohort

from lpmlib import workflow
from lpmlib.cohort import GRADE_COLUMN, METADATA_FILE, layer_file_name, parse_grade, write_seed_layout
from lpmlib.cv import fold_cohorts, fold_splits
from lpmlib.errors import IncompleteRunError
from lpmlib.manifest import KnownEffect, RawCohort
from lpmlib.params import RunParams
from lpmlib.preprocess import PipelineSettings
from lpmlib.questions import attribution, knockout, masking, resistance
from lpmlib.runner import (
    CHAPTERS_RECORD,
    GENERATED,
    IPCKernelManager,
    chapter_metadata,
    check_inputs,
    ensure_kernel,
    find_notebooks,
    producers,
    record_chapter,
    run,
    skip_reason,
    stage_run,
    staged_toc,
    waits_for,
    with_dependencies,
)
from lpmlib.simulate import SimulationConfig, simulate_cohort, write_simulated_cohort
from lpmlib.sources import ManifestSource, SeedLayoutSource, cohort_source

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def manifest_run(tmp_path_factory) -> tuple[RunParams, list]:
    """The small manifest cohort (8 tumours) trained in 2 folds, as chapters 01 and 03 leave it."""
    folder = tmp_path_factory.mktemp("manifest")
    manifest = edited(
        write_small_cohort(folder / "cohort"),
        lambda m: m.update(
            known_effects=[{"driver": "TP53", "layer": "prot", "feature": "G2", "altered": "higher"}]
        ),
    )
    params = RunParams(
        manifest=str(manifest),
        run_dir=str(folder / "run"),
        n_folds=2,
        epochs=2,
        latent_dim=8,
        vae_latent_dim=4,
        n_heads=2,
        ig_steps=4,
    )
    cohort = workflow.prepare_cohort(params)
    return params, workflow.train_folds(params, cohort, log=None)


def test_a_manifest_run_records_its_raw_inputs_and_has_no_truth(manifest_run) -> None:
    params, _ = manifest_run
    record = json.loads((Path(params.run_dir) / "cohort.json").read_text())
    assert record["source"] == params.manifest and not record["planted_truth"] and record["n_patients"] == 8
    assert {Path(p).name for p in record["input_sha256"]} == {
        "manifest.yaml",
        "clinical.txt",
        "mutations.tsv",
        "prot.tsv",
        "phos.tsv",
    }
    assert workflow.layer_truth(params) is None and not workflow.has_planted_truth(params)
    assert "real cohort" in workflow.cohort_description(params, workflow.prepare_cohort(params))


def test_each_fold_is_preprocessed_on_its_own_training_patients(manifest_run) -> None:
    params, folds = manifest_run
    cohort = workflow.prepare_cohort(params)
    views = [
        fold.cohort for fold in folds if fold.training_seed == 1
    ]  # a view per fold, shared by its models
    assert all(view is not None for view in views)
    assert not views[0].layers["prot"].values.equals(views[1].layers["prot"].values)
    assert not cohort.layers["prot"].values.equals(views[0].layers["prot"].values)  # all tumours != one fold
    torch.set_num_threads(2)
    reloaded = workflow.trained_folds(params, cohort)
    assert torch.get_num_threads() == 1  # the loaded models run as they were trained, on one thread
    for fold, again in zip(folds, reloaded):
        assert again.cohort.equals(fold.cohort)
        np.testing.assert_array_equal(again.predictions["all"]["prot"], fold.predictions["all"]["prot"])


def test_every_question_runs_on_the_fold_views(manifest_run) -> None:
    params, folds = manifest_run
    workflow.prepare_cohort(params)  # as the chapters do, before they load the folds
    q1 = knockout.q1_gene_knockout(folds, gene="TP53", top_features=3)["q1_feature_effects"]
    assert set(q1["feature"].dropna()) <= {f"G{j}" for j in range(5)}  # genes, not components
    assert not attribution.q3_master_regulators(folds, n_steps=4)["q3_attribution_summary"].empty
    assert "distance_fraction_normal" in set(
        resistance.q4_resistance_driver(folds)["q4_resistance_summary"]["quantity"]
    )
    assert (
        workflow.endpoint(params) == "prot" and workflow.endpoint(params.replace(endpoint="phos")) == "phos"
    )
    known = knockout.known_effect_check(folds, workflow.known_effects(params))
    assert known[["driver", "feature", "n_ranked"]].values.tolist() == [["TP53", "G2", 5]]
    assert 1 <= known.loc[0, "rank"] <= 5 and known.loc[0, "top_fraction"] == known.loc[0, "rank"] / 5
    assert known.loc[0, "reversed"] == (known.loc[0, "effect"] < 0)
    assert known.loc[0, "n_folds_selected"] == 2 and known.loc[0, "observed_agrees"] in (True, False)
    leader = masking.q6_storm_leader(folds, endpoint=workflow.endpoint(params))["q6_leader"]
    assert set(leader["endpoint"]) == {"prot"}


def test_known_biology_is_read_on_the_training_values_before_projection(manifest_run) -> None:
    params, folds = manifest_run
    raw = cohort_source(params).training_input(None)
    effect = KnownEffect("TP53", "prot", "G2", "higher")
    expected = []
    for fold in folds:
        values = raw.layers["prot"]["G2"].to_numpy()[fold.train_rows]  # no value is missing in G2
        carriers = raw.drivers["TP53"].to_numpy()[fold.train_rows] == 1
        purity_free = fold.cohort.layers["prot"].features["G2"].to_numpy()[fold.train_rows]
        if carriers.any() and not carriers.all():
            expected.append(purity_free[carriers].mean() - purity_free[~carriers].mean())
        assert np.corrcoef(values, purity_free)[0, 1] > 0.5  # the feature's own values, purity-adjusted
    assert expected and knockout.training_difference(folds, effect) == (
        pytest.approx(np.mean(expected)),
        2,
        "",
    )
    strict = [
        dataclasses.replace(
            fold, cohort=raw.fold_cohort(fold.train_rows, PipelineSettings(max_missing_fraction=0))
        )
        for fold in folds
    ]
    gone = KnownEffect("TP53", "prot", "G0", "higher")  # G0 misses one value, in a training patient
    difference, selected, reason = knockout.training_difference(strict, gone)
    assert selected < 2 and reason.startswith("dropped by the missingness filter: missing in ")


def test_the_permutation_null_retrains_on_the_raw_cohort(manifest_run) -> None:
    params, folds = manifest_run
    null = workflow.knockout_null(params.replace(n_permutations=1), workflow.prepare_cohort(params), "TP53")
    assert set(null["permutation"]) == {0} and set(null["driver"]) == {"TP53"}
    record = json.loads(
        next((Path(params.run_dir) / "permutations/TP53/0/cv").glob("fold1/*.json")).read_text()
    )
    assert (
        record["data"]
        != json.loads(next((Path(params.run_dir) / "cv").glob("fold1/*.json")).read_text())["data"]
    )


def test_validation_applies_only_to_a_cohort_with_a_planted_truth(manifest_run, tmp_path: Path) -> None:
    params, _ = manifest_run
    notebooks = find_notebooks(PROJECT)
    validation, curve = (next(nb for nb in notebooks if nb.name.startswith(n)) for n in ("10_", "12_"))
    assert "planted truth" in skip_reason(validation, params, PROJECT)
    assert all(skip_reason(nb, params, PROJECT) is None for nb in notebooks if nb not in (validation, curve))
    write_simulated_cohort(simulate_cohort(SimulationConfig(n_patients=20)), tmp_path / "sim")
    assert skip_reason(validation, RunParams(data_dir="sim"), tmp_path) is None


def test_the_cohort_size_chapter_runs_only_when_sizes_are_given() -> None:
    curve = next(nb for nb in find_notebooks(PROJECT) if nb.name.startswith("12_"))
    assert "curve_sizes" in skip_reason(curve, RunParams(), PROJECT)
    assert skip_reason(curve, RunParams(curve_sizes=(40, 80)), PROJECT) is None


def test_chapters_wait_for_the_chapters_they_read_from_and_no_others() -> None:
    chapters = find_notebooks(PROJECT)
    waits = {
        chapter.name[:2]: sorted(c.name[:2] for c in earlier)
        for chapter, earlier in waits_for(chapters, PROJECT).items()
    }
    assert waits["01"] == [] and waits["02"] == waits["03"] == waits["12"] == ["01"]
    assert all(waits[f"{k:02d}"] == ["03"] for k in range(4, 10))
    assert waits["10"] == ["04", "06", "07", "08", "09"]  # the chapters that write the tables it reads
    assert waits["11"] == [f"{k:02d}" for k in range(1, 11)]  # no declaration: every chapter before it
    # a needed chapter that is not part of this run is taken as done
    questions = [c for c in chapters if c.name[:2] in ("04", "10")]
    assert [sorted(c.name[:2] for c in w) for w in waits_for(questions, PROJECT).values()] == [[], ["04"]]


def test_the_book_is_staged_from_its_own_run_folder_alone(tmp_path: Path) -> None:
    shutil.copytree(PROJECT / "notebooks", tmp_path / "notebooks")
    shutil.copy(PROJECT / "_toc.yml", tmp_path / "_toc.yml")
    params = RunParams(run_dir="results/this")
    for folder, chapters in (
        ("this", ["01_data_assembly", "04_q1_gene_knockout", "12_cohort_size"]),
        ("other", ["02_model"]),
    ):
        for chapter in chapters:
            executed = tmp_path / "results" / folder / "notebooks" / f"{chapter}.ipynb"
            executed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PROJECT / "notebooks" / f"{chapter}.ipynb", executed)
    (tmp_path / GENERATED).mkdir(parents=True)
    (tmp_path / GENERATED / "05_q2_fusion_deletion.ipynb").write_text("{}")  # left by an earlier build
    staged = stage_run(params, tmp_path)
    # chapter 12 does not apply to this run (no curve_sizes), so its old executed copy stays out
    names = ("01_data_assembly.ipynb", "04_q1_gene_knockout.ipynb")
    expected = [tmp_path / GENERATED / name for name in names]
    assert sorted((tmp_path / GENERATED).iterdir()) == expected and staged == expected


def test_a_book_of_some_chapters_needs_the_others_in_its_run_folder(tmp_path: Path) -> None:
    shutil.copytree(PROJECT / "notebooks", tmp_path / "notebooks")
    shutil.copy(PROJECT / "_toc.yml", tmp_path / "_toc.yml")
    executed = tmp_path / "results" / "this" / "notebooks"
    executed.mkdir(parents=True)
    for notebook in find_notebooks(PROJECT):
        if notebook.name[:2] not in ("04", "12"):
            shutil.copy(notebook, executed / notebook.name)
    params = RunParams(run_dir="results/this", curve_sizes=(40,))
    with pytest.raises(IncompleteRunError, match="04_q1_gene_knockout.ipynb") as error:
        run(params, tmp_path, notebooks=["12"])
    assert "--notebooks 04 12" in str(error.value) and "--no-book" in str(error.value)
    assert not (tmp_path / "results" / "this" / "params.json").exists()  # stopped before anything ran


def test_the_table_of_contents_lists_only_the_staged_chapters(tmp_path: Path) -> None:
    shutil.copy(PROJECT / "_toc.yml", tmp_path / "_toc.yml")
    (tmp_path / GENERATED).mkdir(parents=True)
    staged = [nb.stem for nb in find_notebooks(PROJECT) if not nb.name.startswith("10_")]
    for stem in staged:
        (tmp_path / GENERATED / f"{stem}.ipynb").write_text("{}")
    toc = yaml.safe_load(staged_toc(tmp_path).read_text())
    files = [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
    assert sorted(files) == sorted([f"book/_generated/{stem}" for stem in staged] + ["book/references"])
    assert files.index("book/_generated/12_cohort_size") == files.index("book/_generated/03_cv_training") + 1
    assert "Validation" not in [part["caption"] for part in toc["parts"]] and toc["root"] == "book/abstract"


# ---------------------------------------------------------------------------------------------
# Chapters declare what they read and write; a run checks it before anything executes


READERS = [chapter for chapter in find_notebooks(PROJECT) if chapter_metadata(chapter).get("reads")]


@pytest.mark.parametrize("chapter", READERS, ids=lambda path: path.stem)
def test_a_chapter_run_alone_names_what_it_reads_and_the_chapters_to_run_first(
    chapter: Path, truth_cohort: Path, tmp_path: Path
) -> None:
    params = RunParams(data_dir=str(truth_cohort), run_dir=str(tmp_path / "run"))
    needed = with_dependencies([chapter], PROJECT)
    with pytest.raises(IncompleteRunError) as error:
        check_inputs([chapter], params, PROJECT)
    message = str(error.value)
    for artifact in chapter_metadata(chapter)["reads"]:
        assert artifact in message and producers(PROJECT)[artifact].stem in message
    assert message.startswith(f"{chapter.stem} reads ") and "which has not run in" in message
    assert f"--notebooks {' '.join(c.name[:2] for c in needed)}" in message and "--with-deps" in message
    check_inputs(needed, params, PROJECT)  # with the chapters it needs, nothing is missing


def test_a_chapter_needs_its_inputs_from_a_run_with_the_same_parameters(tmp_path: Path) -> None:
    chapters = {chapter.name[:2]: chapter for chapter in find_notebooks(PROJECT)}
    params = RunParams(run_dir=str(tmp_path / "run"))
    (tmp_path / "run" / "cv").mkdir(parents=True)
    record_chapter(tmp_path / "run", chapters["03"], params)
    check_inputs([chapters["04"]], params, PROJECT)
    check_inputs(
        [chapters["04"]], params.replace(n_jobs=1, knockout_gene="PTEN"), PROJECT
    )  # 03 never reads them
    with pytest.raises(
        IncompleteRunError, match=r"models from 03_cv_training, which ran with epochs=100 \(now 5\)"
    ):
        check_inputs([chapters["04"]], params.replace(epochs=5), PROJECT)
    (tmp_path / "run" / CHAPTERS_RECORD).unlink()  # a run folder of an earlier version
    with pytest.raises(IncompleteRunError, match="does not record"):
        check_inputs([chapters["04"]], params, PROJECT)


def test_with_deps_adds_every_chapter_a_chapter_needs_in_book_order() -> None:
    chapters = {chapter.name[:2]: chapter for chapter in find_notebooks(PROJECT)}
    added = with_dependencies([chapters["10"]], PROJECT)
    assert [chapter.name[:2] for chapter in added] == ["01", "03", "04", "06", "07", "08", "09", "10"]
    assert producers(PROJECT)["models"] == chapters["03"]


# ---------------------------------------------------------------------------------------------
# The two cohort sources answer the same questions


def test_each_source_says_what_its_cohort_is_and_what_folds_train_on(manifest_run, truth_cohort) -> None:
    params, folds = manifest_run
    manifest = cohort_source(params)
    seed_layout = cohort_source(RunParams(data_dir=str(truth_cohort)))
    assert isinstance(manifest, ManifestSource) and isinstance(seed_layout, SeedLayoutSource)
    cohort = manifest.cohort()
    assert isinstance(manifest.training_input(cohort), RawCohort) and manifest.location == params.manifest
    assert not manifest.planted_truth() and manifest.layer_truth() is None and manifest.endpoint() == "prot"
    assert [effect.feature for effect in manifest.known_effects()] == ["G2"]
    simulated = seed_layout.cohort()
    assert seed_layout.training_input(simulated) is simulated and seed_layout.known_effects() == []
    assert seed_layout.planted_truth() and seed_layout.layer_truth() is not None
    assert seed_layout.endpoint() == "metabolome" and "planted truth" in seed_layout.describe(simulated)
    # every fold carries its view: a raw cohort's own preprocessing, a model-ready cohort itself
    assert all(fold.cohort is not None and fold.cohort.n_patients == cohort.n_patients for fold in folds)
    assert simulated.fold_cohort(np.arange(5)) is simulated


def test_a_seed_layout_cohort_read_back_through_a_manifest_is_the_same_cohort(tmp_path: Path) -> None:
    config = SimulationConfig(
        n_patients=20, n_components=4, n_ptm_features=8, n_metabolome_features=8, monte_carlo_draws=2
    )
    written = simulate_cohort(config).cohort
    for layer in written.layers.values():
        layer.loadings = None  # a manifest layer of model-ready values has no loadings
    folder = write_seed_layout(written, tmp_path / "cohort")
    seed_layout = cohort_source(RunParams(data_dir=str(folder), n_folds=4))
    expected = seed_layout.cohort()
    meta = pd.read_csv(folder / METADATA_FILE, dtype=str)
    grades = {label: parse_grade(label) for label in meta[GRADE_COLUMN].unique()}
    manifest = {
        "data_dir": ".",
        "clinical": {
            "file": METADATA_FILE,
            "sep": ",",
            "grade": {"column": GRADE_COLUMN, "mapping": {k: v for k, v in grades.items() if v}},
        },
        "drivers": {"clinical": {name: {"column": name, "altered": ["1"]} for name in expected.drivers}},
        "layers": {
            name: {"file": layer_file_name(name, layer.role), "sep": ",", "role": layer.role}
            for name, layer in expected.layers.items()
        },
        "preprocessing": {"model_ready": True},
    }
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    through_manifest = cohort_source(RunParams(manifest=str(folder / "manifest.yaml"), n_folds=4))
    splits = fold_splits(expected.n_patients, n_folds=4)
    views = {
        "seed layout": fold_cohorts(seed_layout.training_input(expected), splits, None),
        "manifest": fold_cohorts(through_manifest.training_input(through_manifest.cohort()), splits, None),
    }
    for cohort in [through_manifest.cohort(), *views["manifest"], *views["seed layout"]]:
        pd.testing.assert_series_equal(cohort.clinical["grade"], expected.clinical["grade"])
        pd.testing.assert_frame_equal(cohort.drivers, expected.drivers)
        assert list(cohort.layers) == list(expected.layers)
        for name, layer in cohort.layers.items():
            assert layer.role == expected.layers[name].role and layer.loadings is None
            pd.testing.assert_frame_equal(layer.values, expected.layers[name].values, check_exact=True)


def test_a_chapter_kernel_is_interrupted_when_asked_but_not_when_shut_down(monkeypatch) -> None:
    """jupyter_client sends SIGINT before a shutdown: a kernel caught in a handler logged an ERROR line."""
    sent: list[int] = []
    send = IPCKernelManager._async_signal_kernel

    async def recording(self, signum: int) -> None:
        sent.append(signum)
        await send(self, signum)

    monkeypatch.setattr(IPCKernelManager, "_async_signal_kernel", recording)

    async def start_interrupt_and_shut_down() -> bool:
        manager = IPCKernelManager(kernel_name=ensure_kernel())
        await manager.start_kernel()
        await manager.interrupt_kernel()
        interrupted = list(sent)
        await manager.shutdown_kernel()
        return interrupted == [signal.SIGINT] and not await manager.is_alive()

    assert asyncio.run(start_interrupt_and_shut_down())
    assert sent.count(signal.SIGINT) == 1  # the interrupt asked for, none at the shutdown
