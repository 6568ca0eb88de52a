"""Independent trainings as tasks: loky or Dask, any number of workers, the same results byte for byte."""

from __future__ import annotations

import operator
import os
import time
from pathlib import Path

import numpy as np
import pytest

from lpmlib.cv import FoldStore, fold_models, run_cv
from lpmlib.params import ParameterError, RunParams
from lpmlib.performance import q0_per_fold
from lpmlib.questions.permutation import knockout_permutation_null
from lpmlib.simulate import SimulationConfig, simulate_cohort
from lpmlib.tasks import SchedulerError, check_one_thread_workers, run_tasks, shared_scheduler
from lpmlib.train import TrainSettings

distributed = pytest.importorskip("distributed")

SETTINGS = TrainSettings(epochs=3)
TINY = {"latent_dim": 8, "vae_latent_dim": 4, "n_heads": 2}
N_FOLDS, N_SEEDS = 3, 1
GENE = "PTEN"


@pytest.fixture(scope="module")
def cohort():
    config = SimulationConfig(
        n_patients=40, n_components=4, n_ptm_features=8, n_metabolome_features=8, monte_carlo_draws=2
    )
    return simulate_cohort(config).cohort


@pytest.fixture(scope="module")
def cluster():
    """A running Dask scheduler with two one-thread workers, reached by its tcp:// address."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40
    ) as running:
        yield running


def train(cohort, run_dir: Path, n_jobs: int, scheduler: str = "") -> bytes:
    """Train the tiny run and return its Q0 per-fold table as CSV bytes."""
    folds = run_cv(cohort, run_dir, SETTINGS, N_FOLDS, n_jobs=n_jobs, log=None, scheduler=scheduler, **TINY)
    assert [(f.fold, f.training_seed) for f in folds] == fold_models(N_FOLDS, N_SEEDS)
    return q0_per_fold(folds).to_csv(index=False).encode()


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory) -> tuple[Path, bytes]:
    """The run trained in this process, one model after the other (loky's path for one worker)."""
    run_dir = tmp_path_factory.mktemp("in_process")
    return run_dir, train(cohort, run_dir, n_jobs=1)


def assert_same_checkpoints(one: Path, other: Path) -> None:
    """Every file of every model's checkpoint (weights, record, history, held-out predictions) is the same,
    byte for byte, in two run folders."""
    for fold, seed in fold_models(N_FOLDS, N_SEEDS):
        a, b = FoldStore(one, fold, seed), FoldStore(other, fold, seed)
        for mine, theirs in [(a.weights, b.weights), (a.record, b.record), (a.history, b.history)]:
            assert mine.read_bytes() == theirs.read_bytes(), mine.name
        assert a.predictions.read_bytes() == b.predictions.read_bytes()
        with np.load(a.predictions) as arrays:
            assert "case_id" in arrays.files and len(arrays.files) > 1  # np.load reads the archive


def test_a_local_dask_cluster_of_two_workers_trains_what_one_process_trains(
    cohort, reference, tmp_path: Path
) -> None:
    run_dir, table = reference
    assert train(cohort, tmp_path / "local", n_jobs=2, scheduler="local") == table
    assert_same_checkpoints(run_dir, tmp_path / "local")


def test_a_running_dask_scheduler_trains_what_one_process_trains(
    cohort, reference, cluster, tmp_path
) -> None:
    """Two loky processes train the same too (`test_training`)."""
    run_dir, table = reference
    assert train(cohort, tmp_path / "tcp", n_jobs=-1, scheduler=cluster.scheduler_address) == table
    assert_same_checkpoints(run_dir, tmp_path / "tcp")


def test_the_permutation_null_is_the_same_on_dask(cohort, cluster, tmp_path: Path) -> None:
    def null(run_dir: Path, scheduler: str, n_jobs: int = 2):
        return knockout_permutation_null(
            cohort, GENE, run_dir, SETTINGS, 2, n_jobs=n_jobs, n_folds=2, scheduler=scheduler, **TINY
        )

    here = null(tmp_path / "here", "", n_jobs=1).to_csv(index=False)
    assert null(tmp_path / "dask", cluster.scheduler_address).to_csv(index=False) == here


def slow_value(value: int, seconds: float) -> int:
    time.sleep(seconds)
    return value


def die_once(marker: str, value: int) -> int:
    """Kill the worker process on the first attempt (the marker does not exist yet), return `value` after."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return value


def jobs_and_scheduler(backend: str, cluster) -> tuple[int, str]:
    return {"in process": (1, ""), "loky": (2, ""), "dask": (2, cluster.scheduler_address)}[backend]


@pytest.mark.parametrize("backend", ["in process", "loky", "dask"])
def test_run_tasks_returns_results_in_submission_order(backend: str, cluster) -> None:
    n_jobs, scheduler = jobs_and_scheduler(backend, cluster)
    arguments = [(value, 0.1 * (4 - value)) for value in range(4)]  # the first finishes last
    assert run_tasks(slow_value, arguments, n_jobs, scheduler) == [0, 1, 2, 3]
    assert run_tasks(slow_value, [], n_jobs, scheduler) == []


@pytest.mark.parametrize("backend", ["in process", "loky", "dask"])
def test_a_task_exception_is_raised_as_itself(backend: str, cluster) -> None:
    n_jobs, scheduler = jobs_and_scheduler(backend, cluster)
    with pytest.raises(ZeroDivisionError):
        run_tasks(operator.truediv, [(1, 1), (1, 0), (2, 1)], n_jobs, scheduler)


def test_a_dask_worker_that_dies_loses_only_its_task_which_runs_again(cluster, tmp_path: Path) -> None:
    arguments = [(str(tmp_path / "dies"), 7), (str(tmp_path / "done"), 8)]
    (tmp_path / "done").touch()
    assert run_tasks(die_once, arguments, 2, cluster.scheduler_address) == [7, 8]
    assert (tmp_path / "dies").exists()  # the first attempt ran, and its worker exited


def test_a_dask_worker_of_several_threads_is_refused() -> None:
    class Client:
        def nthreads(self) -> dict[str, int]:
            return {"tcp://127.0.0.1:1": 1, "tcp://127.0.0.1:2": 4}

    with pytest.raises(SchedulerError, match=r"tcp://127.0.0.1:2 run more than one thread.*--nthreads 1"):
        check_one_thread_workers(Client())


def test_one_local_worker_starts_no_cluster() -> None:
    with shared_scheduler("local", 1) as address:
        assert address == ""


@pytest.mark.parametrize(
    "value", ["", "local", "tcp://scheduler:8786", "tcp://10.1.2.3:8786", "tcp://[::1]:8786"]
)
def test_the_scheduler_parameter_accepts_loky_local_and_an_address(value: str) -> None:
    assert RunParams.from_mapping({"scheduler": value}).scheduler == value


@pytest.mark.parametrize(
    "value", ["dask", "Local", "tcp://scheduler", "scheduler:8786", "tcp:/host:1", "tcp://a b:1"]
)
def test_a_bad_scheduler_is_one_line_naming_the_parameter(value: str) -> None:
    with pytest.raises(ParameterError) as error:
        RunParams.from_mapping({"scheduler": value})
    message = str(error.value)
    assert "\n" not in message
    assert message == (
        f"parameter 'scheduler' must be one of '', 'local' or an address tcp://host:port, got {value!r}"
    )


def test_run_tasks_checks_the_scheduler_before_running_anything() -> None:
    with pytest.raises(ValueError, match="'scheduler' must be one of '', 'local' or an address"):
        run_tasks(operator.truediv, [(1, 0)], 1, "dask://nowhere:1")
