"""Cross-validated training: learning, reproducibility, resuming and corrupt checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lpmlib import cv
from lpmlib.cv import FoldStore, MissingTrainingError, load_folds, run_cv
from lpmlib.performance import q0_per_fold
from lpmlib.simulate import SimulationConfig, simulate_cohort
from lpmlib.train import TrainSettings

SETTINGS = TrainSettings(epochs=4)  # the mechanics of training, not its quality
SMALL = {"latent_dim": 16, "vae_latent_dim": 8}
N_FOLDS = 3


@pytest.fixture(scope="module")
def cohort(small_sim):
    """The small simulated cohort: reproducibility, resuming and checkpoints do not depend on its size."""
    return small_sim.cohort


def q0_csv(cohort, run_dir: Path, n_jobs: int = 1, settings: TrainSettings = SETTINGS) -> tuple[bytes, list]:
    folds = run_cv(cohort, run_dir, settings, N_FOLDS, n_jobs=n_jobs, log=None, **SMALL)
    path = run_dir / "q0.csv"
    q0_per_fold(folds).to_csv(path, index=False)
    return path.read_bytes(), folds


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory) -> tuple[Path, bytes, list]:
    """One finished run: its folder, its Q0 table and its folds. Tests change copies of the folder."""
    run_dir = tmp_path_factory.mktemp("trained")
    return (run_dir, *q0_csv(cohort, run_dir))


def copy_run(trained, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained[0], tmp_path / "run"))


@pytest.mark.slow
def test_training_beats_the_mean_predictor_on_held_out_patients(tmp_path: Path) -> None:
    cohort = simulate_cohort(SimulationConfig()).cohort
    folds = run_cv(cohort, tmp_path, log=None)  # the default cohort, settings and model
    q0 = q0_per_fold(folds)
    lpm = q0[(q0["method"] == "lpm_all") & (q0["metric"] == "r2_variance_weighted")]
    by_layer = lpm.groupby("layer")["value"].mean()
    # the held-out mean predictor scores 0; the training-fold mean scores slightly below
    assert by_layer[["rna", "protein", "pY", "phospho"]].min() > 0.1, by_layer
    assert all(len(f.history) == TrainSettings().epochs + 1 for f in folds)  # epoch 0 and the whole schedule
    assert all(f.history["validation_loss"].iloc[-1] < f.history["validation_loss"].iloc[0] for f in folds)


def test_training_runs_the_whole_schedule_and_reads_out_after_its_last_epoch(trained) -> None:
    for fold in trained[2]:
        assert fold.history["epoch"].tolist() == list(range(SETTINGS.epochs + 1))
        assert np.isclose(fold.history["read_out_error"].iloc[-1], fold.read_out["inner_error_deep"].mean())


def test_same_seed_gives_a_byte_identical_q0_table_with_one_or_two_jobs(
    cohort, trained, tmp_path: Path
) -> None:
    serial, _ = q0_csv(cohort, tmp_path / "serial", n_jobs=1)
    parallel, _ = q0_csv(cohort, tmp_path / "parallel", n_jobs=2)
    assert serial == trained[1]
    assert parallel == trained[1]


def test_rerun_reuses_finished_folds_and_resumes_a_deleted_one(cohort, trained, tmp_path: Path) -> None:
    run_dir = copy_run(trained, tmp_path)
    FoldStore(run_dir, 2).weights.unlink()
    resumed, folds = q0_csv(cohort, run_dir)
    assert [f.reused for f in folds] == [True, False, True]
    assert resumed == trained[1]


def test_a_corrupt_checkpoint_is_retrained_not_loaded(cohort, trained, tmp_path: Path) -> None:
    run_dir = copy_run(trained, tmp_path)
    weights = FoldStore(run_dir, 3).weights
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    again, folds = q0_csv(cohort, run_dir)
    assert [f.reused for f in folds] == [True, True, False]
    assert again == trained[1]


def test_changed_settings_retrain_every_fold(cohort, trained, tmp_path: Path) -> None:
    _, folds = q0_csv(cohort, copy_run(trained, tmp_path), settings=TrainSettings(epochs=2))
    assert not any(f.reused for f in folds)
    assert all(f.history["epoch"].max() <= 2 for f in folds)


def test_checkpoints_of_other_model_code_are_retrained_and_never_loaded(
    cohort, trained, tmp_path: Path, monkeypatch
) -> None:
    run_dir = copy_run(trained, tmp_path)
    monkeypatch.setattr(cv, "training_code_hash", lambda: "another version")
    with pytest.raises(MissingTrainingError, match="another version of lpmlib"):
        load_folds(cohort, run_dir, N_FOLDS)
    _, folds = q0_csv(cohort, run_dir)
    assert not any(f.reused for f in folds)


def test_held_out_predictions_cover_every_pattern_and_patient(cohort, trained) -> None:
    run_dir, _, folds = trained
    held_out = np.sort(np.concatenate([f.test_rows for f in folds]))
    assert np.array_equal(held_out, np.arange(cohort.n_patients))
    fold = folds[0]
    assert {"all", "genomics_only", "without_pY", "only_acetyl"} <= set(fold.predictions)
    for layer in cohort.layers:
        assert fold.predictions["all"][layer].shape == (len(fold.test_rows), cohort.layers[layer].n_features)
    saved = np.load(FoldStore(run_dir, 1).predictions)
    assert list(saved["case_id"]) == list(cohort.case_ids[fold.test_rows])
    np.testing.assert_array_equal(saved["genomics_only/rna"], fold.predictions["genomics_only"]["rna"])
    assert not np.allclose(fold.predictions["genomics_only"]["pY"], fold.predictions["all"]["pY"])
