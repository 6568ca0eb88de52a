"""Training speed and memory of 5-fold cross-validation on simulated cohorts of growing size.

Prints one row per cohort size: epochs run, seconds per epoch, the whole 5-fold training time and the
peak resident memory of the process. Each size runs in a fresh process, so peaks do not mix.

    .venv/bin/python benchmarks/train_speed.py                       # 160, 1,600 and 16,000 patients
    .venv/bin/python benchmarks/train_speed.py --sizes 160 --n-jobs 2

Large cohorts can be capped in epochs (`--max-epochs SIZE=EPOCHS`, default 16000=10): the table says
so, and their full time is then the time of the capped run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def measure(n_patients: int, max_epochs: int, n_jobs: int) -> dict:
    """Simulate, then train all folds with the default model; runs inside the child process."""
    from lpmlib.cv import run_cv
    from lpmlib.simulate import SimulationConfig, simulate_cohort
    from lpmlib.train import TrainSettings

    cohort = simulate_cohort(SimulationConfig(n_patients=n_patients)).cohort
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        folds = run_cv(cohort, run_dir, TrainSettings(epochs=max_epochs), n_jobs=n_jobs, log=None)
        seconds = time.perf_counter() - start
    epochs = sum(len(f.history) for f in folds)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if n_jobs > 1:
        peak_mb = max(peak_mb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return {
        "patients": n_patients,
        "max_epochs": max_epochs,
        "epochs_run": epochs,
        "seconds_per_epoch": seconds / epochs,
        "five_fold_seconds": seconds,
        "peak_memory_mb": peak_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 1600, 16000])
    parser.add_argument("--max-epochs", nargs="*", default=["16000=10"], metavar="SIZE=EPOCHS")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.epochs, args.n_jobs)))
        return
    caps = {int(k): int(v) for k, v in (item.split("=") for item in args.max_epochs)}
    print(f"{'patients':>9} {'max ep':>7} {'epochs run':>11} {'s/epoch':>9} {'5-fold s':>10} {'peak MB':>9}")
    for size in args.sizes:
        command = [
            sys.executable,
            __file__,
            "--one",
            str(size),
            "--epochs",
            str(caps.get(size, 100)),
            "--n-jobs",
            str(args.n_jobs),
        ]
        row = json.loads(
            subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        )
        print(
            f"{row['patients']:>9} {row['max_epochs']:>7} {row['epochs_run']:>11} "
            f"{row['seconds_per_epoch']:>9.3f} "
            f"{row['five_fold_seconds']:>10.1f} {row['peak_memory_mb']:>9.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
