"""Training speed, memory and held-out R^2 on simulated cohorts of growing size, and the time of Q1's
permutation null on one and two workers (loky and a Dask LocalCluster): one table.

Each training row simulates a cohort (untimed, in another process), reads it back and times its whole
5-fold training (one model per fold, `run_cv` with --n-jobs workers) with the automatic batch
(`TrainSettings(batch_size=0)`: 16 up to 400 training patients, see `lpmlib.train.batch_rule`; or the
--batch given), then one fold's epochs (`fit` for a few epochs, the median epoch after the first). Peak
memory is the largest sum of the resident memory of the process and its workers during the 5-fold
training, sampled every 0.1 s. R^2 is the held-out variance-weighted R^2 of the LPM with all inputs (Q0's
`lpm_all`), the mean over folds, per target layer and over them, beside reduced-rank ridge and ridge;
`deep` counts the read-outs the inner splits chose deep, of all layers, inputs and folds (at 0 the LPM is
its anchors, and its R^2 cannot show what training changed). Each permutation row retrains 20
permutations of the knocked-out driver's column (5 folds each, on the default cohort) with
`knockout_permutation_null`, for few epochs (--permutation-epochs, in the table): the fixed costs
(anchors, held-out predictions, workers starting) then weigh more than in a real null, which makes the
2-worker ratio, if anything, pessimistic. Every measurement runs in a fresh process, so peaks and warm
caches do not mix.

    .venv/bin/python benchmarks/train_speed.py                  # the real measurement (35 minutes here)
    .venv/bin/python benchmarks/train_speed.py --max-epochs 16000=10 --permutations 4   # a quick look

A capped size trains fewer epochs than the schedule (`--max-epochs SIZE=EPOCHS`): its row says so, and
its 5-fold time is that of the capped run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SIZES = (160, 1600, 16000)
EPOCH_SAMPLE = 4  # epochs of the one-fold run that times an epoch (the last evaluates the inner split)
GENE = "FOXA1"  # the permuted driver (the book's default knockout)
SCHEDULERS = {"loky": "", "dask": "local"}  # backend -> `scheduler` of lpmlib.tasks
NULL_RUNS = (("loky", 1), ("loky", 2), ("dask", 1), ("dask", 2))


@contextmanager
def peak_memory_mb() -> Iterator[Callable[[], float]]:
    """The peak, over the block, of the resident memory of this process and all its descendants (MB)."""
    import psutil

    me, peak, done = psutil.Process(), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak[0]
    finally:
        done.set()
        sampler.join()


def seconds_per_epoch(cohort, settings) -> float:
    """The median time of the epochs after the first of one fold's `fit`: an epoch's training steps, its
    anchors and masks (the inner split's evaluation, at the last, is the slowest and not the median)."""
    from lpmlib.cv import model_config
    from lpmlib.tensors import CohortTensors, LayerScaler
    from lpmlib.train import fit

    train_rows, (inner, validation), seed = first_fold(cohort.n_patients, settings)
    scaler = LayerScaler.fit(cohort, train_rows)
    ends: list[float] = []
    fit(
        model_config(cohort),
        CohortTensors.build(cohort, inner, scaler),
        CohortTensors.build(cohort, validation, scaler),
        dataclasses.replace(settings, epochs=EPOCH_SAMPLE),
        seed,
        lambda row: ends.append(time.perf_counter()),
    )
    return float(np.median(np.diff(ends)))


R2_METHODS = {"lpm_all": "LPM", "reduced_rank_ridge_all": "reduced-rank ridge", "ridge_all": "ridge"}


def held_out_r2(folds, methods=R2_METHODS) -> dict[str, dict[str, float]]:
    """Q0's held-out variance-weighted R^2, the mean over folds, per method (of Q0's, such as `lpm_all`)
    and target layer: the LPM beside its baselines on the same folds."""
    from lpmlib.performance import q0_per_fold

    per_fold = q0_per_fold(folds)
    chosen = per_fold["method"].isin(methods) & per_fold["layer"].isin(folds[0].cohort.target_names)
    per_fold = per_fold[chosen & (per_fold["metric"] == "r2_variance_weighted")]
    means = per_fold.groupby(["method", "layer"], sort=False)["value"].mean()
    return {method: means[method].astype(float).to_dict() for method in methods}


def deep_read_outs(folds) -> str:
    """How many of the read-outs the folds' inner splits chose are deep (residual or blend), of all
    (layers x inputs x folds): at 0 the LPM predicts with its anchors alone."""
    from lpmlib.performance import read_out_table

    chosen = read_out_table(folds)["read_out"]
    return f"{int((chosen != 'anchor').sum())}/{len(chosen)}"


def measure_training(n_patients: int, epochs: int, n_jobs: int, batch_size: int) -> dict:
    """One training row; runs in its own process."""
    from lpmlib.cohort import read_seed_layout
    from lpmlib.cv import run_cv
    from lpmlib.train import TrainSettings

    settings = TrainSettings(epochs=epochs, batch_size=batch_size)
    batch, rate = settings.batch_and_rate(inner_patients(n_patients, settings))
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as run_dir:
        cohort = read_seed_layout(simulated(n_patients, data_dir))
        with peak_memory_mb() as peak:
            start = time.perf_counter()
            folds = run_cv(cohort, run_dir, settings, n_jobs=n_jobs, log=None)
            seconds = time.perf_counter() - start
        r2 = held_out_r2(folds)  # while the run folder, which holds the folds' predictions, exists
        deep = deep_read_outs(folds)
    per_epoch = seconds_per_epoch(cohort, settings)  # after: its memory is not the training's
    return {
        "what": "5-fold training",
        "patients": n_patients,
        "backend": "loky",
        "workers": n_jobs,
        "epochs": epochs,
        "batch": batch,
        "rate": rate,
        "s_per_epoch": per_epoch,
        "seconds": seconds,
        "peak_mb": peak(),
        "deep": deep,
        "r2": r2,
    }


def simulated(n_patients: int, folder: str) -> str:
    """A simulated cohort written in `folder` by `lpm simulate` in another process, as a run's first
    chapter writes it: the simulator's own peak (1.7 GB at 16,000 patients) is not the training's."""
    command = [
        sys.executable,
        "-m",
        "lpmlib.cli",
        "simulate",
        "--out",
        folder,
        "--n-patients",
        str(n_patients),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return folder


def first_fold(n_patients: int, settings) -> tuple:
    """Fold 1's training rows, their split into the network's patients and the inner split, and the seed
    of its first model, as `lpmlib.cv.run_cv` draws them at the default seed."""
    from lpmlib.cv import fold_splits, inner_split, model_seed

    seed = model_seed(42, 1, 1)
    train_rows, _ = fold_splits(n_patients)[0]
    return train_rows, inner_split(train_rows, settings, seed), seed


def inner_patients(n_patients: int, settings) -> int:
    """The patients fold 1's network trains on: the rows the batch rule sees."""
    _, (inner, _), _ = first_fold(n_patients, settings)
    return len(inner)


def measure_null(backend: str, workers: int, n_permutations: int, epochs: int) -> dict:
    """One permutation row; runs in its own process."""
    from lpmlib.questions.permutation import knockout_permutation_null
    from lpmlib.simulate import SimulationConfig, simulate_cohort
    from lpmlib.train import TrainSettings

    cohort = simulate_cohort(SimulationConfig()).cohort
    settings = TrainSettings(epochs=epochs, batch_size=0)
    with peak_memory_mb() as peak, tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        knockout_permutation_null(
            cohort, GENE, run_dir, settings, n_permutations, n_jobs=workers, scheduler=SCHEDULERS[backend]
        )
        seconds = time.perf_counter() - start
    return {
        "what": f"{n_permutations} permutations",
        "patients": cohort.n_patients,
        "backend": backend,
        "workers": workers,
        "epochs": epochs,
        **dict(zip(("batch", "rate"), settings.batch_and_rate(inner_patients(cohort.n_patients, settings)))),
        "s_per_epoch": np.nan,
        "seconds": seconds,
        "peak_mb": peak(),
        "deep": "",
        "r2": {},
    }


HEADER = (
    f"{'measurement':<17} {'patients':>8} {'backend':>7} {'workers':>7} {'epochs':>6} {'batch':>5} "
    f"{'lr':>7} {'s/epoch':>8} {'seconds':>8} {'x 1 wkr':>7} {'peak MB':>8} {'deep':>6}  "
    "held-out R^2 (all inputs)"
)


def format_row(row: dict, one_worker: dict[tuple, float]) -> str:
    """A table line; a permutation row on 2 workers also shows its time relative to 1 worker."""
    key = (row["what"], row["backend"])
    ratio = f"{row['seconds'] / one_worker[key]:.2f}" if row["workers"] > 1 and key in one_worker else ""
    per_epoch = "" if np.isnan(row["s_per_epoch"]) else f"{row['s_per_epoch']:.3f}"
    r2_text = " | ".join(
        f"{R2_METHODS[method]} {np.mean(list(r2.values())):.3f} ("
        + ", ".join(f"{layer} {value:.3f}" for layer, value in r2.items())
        + ")"
        for method, r2 in row["r2"].items()
    )
    return (
        f"{row['what']:<17} {row['patients']:>8} {row['backend']:>7} {row['workers']:>7} {row['epochs']:>6} "
        f"{row['batch']:>5} {row['rate']:>7.1e} {per_epoch:>8} {row['seconds']:>8.1f} "
        f"{ratio:>7} {row['peak_mb']:>8.0f} {row['deep']:>6}  {r2_text}"
    )


def in_child(*arguments: str, script: str = __file__) -> dict:
    """Run a benchmark script (this one by default) on one measurement in a fresh process, from the
    project's root (where the run parameters' relative paths start), and read its JSON line."""
    command = [sys.executable, script, *arguments]
    root = Path(__file__).resolve().parents[1]
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=root).stdout
    return json.loads(output.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--max-epochs", nargs="*", default=[], metavar="SIZE=EPOCHS")
    parser.add_argument("--n-jobs", type=int, default=2, help="workers of each 5-fold training")
    parser.add_argument("--permutations", type=int, default=20, help="0: no permutation rows")
    parser.add_argument("--permutation-epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=0, help="batch of the training rows (0: automatic)")
    parser.add_argument("--training", nargs=4, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--null", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.training:
        print(json.dumps(measure_training(*args.training)))
        return
    if args.null:
        backend, workers = args.null
        print(json.dumps(measure_null(backend, int(workers), args.permutations, args.permutation_epochs)))
        return
    caps = {int(size): int(epochs) for size, epochs in (item.split("=") for item in args.max_epochs)}
    from lpmlib.train import TrainSettings

    print(HEADER, flush=True)
    one_worker: dict[tuple, float] = {}
    for size in args.sizes:
        epochs = caps.get(size, TrainSettings().epochs)
        print(
            format_row(
                in_child("--training", str(size), str(epochs), str(args.n_jobs), str(args.batch)), one_worker
            ),
            flush=True,
        )
    for backend, workers in NULL_RUNS if args.permutations else ():
        options = [
            "--permutations",
            str(args.permutations),
            "--permutation-epochs",
            str(args.permutation_epochs),
        ]
        row = in_child("--null", backend, str(workers), *options)
        if workers == 1:
            one_worker[row["what"], backend] = row["seconds"]
        print(format_row(row, one_worker), flush=True)


if __name__ == "__main__":
    main()
