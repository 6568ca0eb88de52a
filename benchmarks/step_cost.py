"""What an optimiser step costs, and the least time a default 5-fold training could take on 2 cores.

An epoch of the default model costs a part per step (the hundreds of small operations of a forward and
backward pass and an optimiser update, whatever the batch) and a part per epoch (the arithmetic on its
patients, which a larger batch only regroups, and the epoch's anchors and masks). This script times an
epoch of the default cohort's fold 1 at several batch sizes (the median epoch after the first of a short
`fit`, on one thread, as `train_speed.py` times one; the least of --repeats), fits
seconds per epoch = per epoch + per step x steps by least squares, and times the costs of a 5-fold
training that do not grow with the epochs (a 1-epoch `run_cv` on --n-jobs workers: workers starting,
anchors, read-out choices, held-out predictions). From them it prints the time of one 5-fold training at
the method's settings (100 epochs at batch 16) under three schedules:
- as it runs: the five folds in ceil(5 / workers) rounds of one fold per worker;
- perfectly balanced: the folds' epochs spread evenly over the workers;
- as one batched step: each worker trains its ceil(5 / workers) folds as one model whose step takes all
  their batches at once, paying the per-step part once. No batched training of folds can do better: a
  step over several folds' weights costs at least that.
Each adds the fixed costs (which include one epoch) to the other 99 epochs. A schedule over the target
shows that no faster way of running the same steps meets it at these settings.

    .venv/bin/python benchmarks/step_cost.py                  # 1 minute here
    .venv/bin/python benchmarks/step_cost.py --batches 16 51 102 --target 12
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time

import numpy as np
from train_speed import first_fold, seconds_per_epoch

BATCHES = (8, 11, 16, 21, 26, 34, 51, 102)  # the inner split of a default fold has 102 patients
N_FOLDS = 5


def epoch_costs(cohort, settings, batches, repeats: int) -> list[tuple[int, int, float]]:
    """(batch, steps per epoch, seconds per epoch) of fold 1, the least of `repeats` timings."""
    from lpmlib.tasks import one_thread

    _, (inner, _), _ = first_fold(cohort.n_patients, settings)
    rows = []
    for batch in batches:
        batch_settings = dataclasses.replace(settings, batch_size=batch)
        seconds = min(one_thread(seconds_per_epoch, cohort, batch_settings) for _ in range(repeats))
        rows.append((batch, math.ceil(len(inner) / batch), seconds))
    return rows


def fixed_costs(cohort, settings, n_jobs: int) -> float:
    """The wall time of a 1-epoch 5-fold training: what does not grow with the epochs."""
    from lpmlib.cv import run_cv

    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        run_cv(cohort, run_dir, dataclasses.replace(settings, epochs=1), N_FOLDS, n_jobs=n_jobs, log=None)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", nargs="*", type=int, default=list(BATCHES))
    parser.add_argument("--repeats", type=int, default=2, help="timings of each batch; the least is kept")
    parser.add_argument("--n-jobs", type=int, default=2, help="workers of the 5-fold training")
    parser.add_argument("--target", type=float, default=12.0, help="seconds, for the last column")
    args = parser.parse_args()

    from lpmlib.simulate import SimulationConfig, simulate_cohort
    from lpmlib.train import TrainSettings, batch_rule

    cohort = simulate_cohort(SimulationConfig()).cohort
    settings = TrainSettings()
    _, (inner, _), _ = first_fold(cohort.n_patients, settings)
    batch, _ = batch_rule(len(inner), settings.batch_size, settings.learning_rate)

    rows = epoch_costs(cohort, settings, args.batches, args.repeats)
    per_step, per_epoch = np.polyfit([n for _, n, _ in rows], [s for _, _, s in rows], 1)
    print(f"default cohort, fold 1: {len(inner)} patients train the network (one thread)")
    print(f"{'batch':>5} {'steps':>5} {'s/epoch':>8} {'fitted':>7}")
    for b, n, s in rows:
        print(f"{b:>5} {n:>5} {s:>8.3f} {per_epoch + per_step * n:>7.3f}")
    print(f"seconds per epoch = {per_epoch:.4f} + {per_step:.4f} x steps")

    overhead = fixed_costs(cohort, settings, args.n_jobs)
    workers = min(args.n_jobs, N_FOLDS)

    steps = math.ceil(len(inner) / batch)  # an epoch's, at the method's batch
    rounds = math.ceil(N_FOLDS / workers)
    epoch_seconds = {  # of each schedule's critical path, per epoch
        "as it runs (rounds of one fold per worker)": rounds * (per_epoch + per_step * steps),
        "perfectly balanced over the workers": N_FOLDS / workers * (per_epoch + per_step * steps),
        "each worker's folds as one batched step": rounds * per_epoch + per_step * steps,
    }
    print(f"\n5 folds x {settings.epochs} epochs at batch {batch} on {workers} workers")
    print(f"fixed costs (a 1-epoch 5-fold training): {overhead:.1f} s")
    print(f"{'schedule':<42} {'epochs s':>8} {'+ fixed s':>9}  under {args.target:g} s")
    for name, seconds in epoch_seconds.items():
        epochs = (settings.epochs - 1) * seconds  # beyond the epoch the fixed costs include
        total = epochs + overhead
        print(f"{name:<42} {epochs:>8.1f} {total:>9.1f}  {'yes' if total < args.target else 'no'}")


if __name__ == "__main__":
    main()
