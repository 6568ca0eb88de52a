"""Cross-validated training: learning, reproducibility, resuming and corrupt checkpoints."""

from __future__ import annotations

import copy
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lpmlib import cv
from lpmlib.cv import FoldStore, MissingTrainingError, load_folds, model_config, run_cv
from lpmlib.model import LatentPerturbationModel, lpm_loss, sample_ptm_mask
from lpmlib.performance import q0_per_fold
from lpmlib.simulate import SimulationConfig, simulate_cohort
from lpmlib.tensors import CohortTensors, LayerScaler
from lpmlib.train import READ_OUT_EVERY, FlatAdamW, FlatParameters, TrainSettings, batch_rule, scaled_rate

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


def test_the_inner_split_is_evaluated_every_read_out_epoch_and_at_the_last(cohort, tmp_path: Path) -> None:
    epochs = READ_OUT_EVERY + 3
    fold = run_cv(cohort, tmp_path, TrainSettings(epochs=epochs), N_FOLDS, log=None, **SMALL)[0]
    evaluated = [0, READ_OUT_EVERY, epochs]
    for column in ("validation_loss", "read_out_error"):
        assert fold.history.loc[fold.history[column].notna(), "epoch"].tolist() == evaluated, column
    assert fold.history["train_loss"].iloc[1:].notna().all()


def test_batch_rule_is_16_up_to_400_patients_then_25_steps_an_epoch() -> None:
    assert batch_rule(102, 0, 1e-3) == (16, 1e-3)  # the default cohort's inner training patients
    assert batch_rule(400, 0, 1e-3) == (16, 1e-3)
    batch, rate = batch_rule(401, 0, 1e-3)
    assert batch == 17 and rate == pytest.approx(1e-3 * math.sqrt(17 / 16))
    for n_train in (1024, 10_240, 100_000):
        batch, _ = batch_rule(n_train, 0, 1e-3)
        assert math.ceil(n_train / batch) <= 25 < math.ceil(n_train / (batch - 1))
    assert batch_rule(10_240, 0, 1e-3) == (410, pytest.approx(4e-3))  # the rate's growth is capped
    assert scaled_rate(64, 1e-3) == pytest.approx(2e-3) and scaled_rate(1024, 1e-3) == pytest.approx(4e-3)
    assert batch_rule(10_240, 16, 1e-3) == (16, 1e-3)  # a batch size given is used as given
    assert TrainSettings(batch_size=0).batch_and_rate(102) == (16, 1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        TrainSettings(batch_size=-1)


def test_the_automatic_batch_trains_a_small_cohort_exactly_as_batch_16(
    cohort, trained, tmp_path: Path
) -> None:
    assert SETTINGS.batch_size == 0  # the default, which `trained` used
    given, _ = q0_csv(cohort, tmp_path, settings=TrainSettings(epochs=SETTINGS.epochs, batch_size=16))
    assert given == trained[1]
    larger, _ = q0_csv(cohort, tmp_path / "32", settings=TrainSettings(epochs=SETTINGS.epochs, batch_size=32))
    assert larger != trained[1]  # the batch reaches the training


def small_model(cohort) -> tuple[LatentPerturbationModel, CohortTensors]:
    torch.manual_seed(0)
    rows = np.arange(32)
    data = CohortTensors.build(cohort, rows, LayerScaler.fit(cohort, rows))
    return LatentPerturbationModel(model_config(cohort, **SMALL)).train(), data


def training_loss(model: LatentPerturbationModel, data: CohortTensors, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    mask = sample_ptm_mask(len(data), len(model.config.ptm_dims), torch.Generator().manual_seed(seed))
    output = model(data.drivers, data.grade, {n: data.layers[n] for n in model.config.ptm_dims}, mask)
    return lpm_loss(output, data.layers, mask, model.config)["total"]


def test_flat_parameters_receive_the_gradients_of_the_model_as_constructed(cohort) -> None:
    """Through the banks lent to the forward pass, and through every other parameter."""
    model, data = small_model(cohort)
    with torch.no_grad():  # residual decoders start at zero: open them, so that every gradient flows
        for decoder in [*model.target_decoders.values(), *model.ptm_decoders.values()]:
            torch.nn.init.normal_(decoder[-1].weight, std=0.1)
    reference = copy.deepcopy(model)
    flat = FlatParameters(model)
    training_loss(model, data, 0).backward()
    training_loss(reference, data, 0).backward()
    assert all(bank.lent is not None for bank in model.banks.values())
    for (name, mine), given in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(mine.grad, given.grad, msg=name)
    expected = torch.cat([p.grad.reshape(-1) for p in reference.parameters()]).norm()
    torch.testing.assert_close(flat.grad.norm(), expected)  # what clipping and AdamW see


def test_flat_adamw_takes_the_steps_of_torch_adamw_with_clipping(cohort) -> None:
    """On the same gradients (those of the copy), so that only the optimisers differ."""
    ours, data = small_model(cohort)
    theirs = copy.deepcopy(ours)
    flat = FlatParameters(ours)
    optimiser = FlatAdamW(flat, weight_decay=0.01)
    reference = torch.optim.AdamW(theirs.parameters(), lr=0.01, weight_decay=0.01, fused=True)
    for seed in range(3):
        reference.zero_grad()
        training_loss(theirs, data, seed).backward()
        for mine, given in zip(ours.parameters(), theirs.parameters()):
            mine.grad.copy_(given.grad)
        flat.clip_grad_norm(0.5)
        optimiser.step(0.01)
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.5)
        reference.step()
    for (name, mine), given in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(mine, given, rtol=1e-5, atol=1e-7, msg=name)


def test_a_released_model_owns_its_parameters_and_pickles(cohort) -> None:
    model, data = small_model(cohort)
    flat = FlatParameters(model)
    FlatAdamW(flat, weight_decay=0.0).descend(training_loss(model, data, 0), 0.01, 1.0)
    trained = {name: p.detach().clone() for name, p in model.named_parameters()}
    flat.release()
    assert all(p.grad is None and p.untyped_storage().nbytes() == p.numel() * 4 for p in model.parameters())
    assert all(bank.lent is None for bank in model.banks.values())
    again = pickle.loads(pickle.dumps(model))
    for name, p in again.named_parameters():
        assert torch.equal(p, trained[name]), name


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


def test_held_out_predictions_are_read_from_the_fold_folder_and_only_the_model_s_own(
    cohort, trained, tmp_path: Path
) -> None:
    """A fold's predictions live in its folder, not in memory: with another model's file in their place,
    both the folds of the run and the folds loaded again refuse them, naming the file."""
    run_dir = copy_run(trained, tmp_path)
    folds = load_folds(cohort, run_dir, N_FOLDS)
    first = FoldStore(run_dir, 1).predictions
    before = folds[0].predictions["all"]["rna"]
    shutil.copyfile(FoldStore(run_dir, 2).predictions, first)
    with pytest.raises(MissingTrainingError, match=f"'{first}' does not hold the held-out predictions"):
        folds[0].predictions["all"]["rna"]
    with pytest.raises(MissingTrainingError, match="run the training chapter"):
        load_folds(cohort, run_dir, N_FOLDS)
    _, again = q0_csv(cohort, run_dir)  # training again reuses the model and writes its predictions
    assert [f.reused for f in again] == [True] * N_FOLDS
    np.testing.assert_array_equal(load_folds(cohort, run_dir, N_FOLDS)[0].predictions["all"]["rna"], before)
