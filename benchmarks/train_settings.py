"""What shorter trainings cost: each training setting's 5-fold time beside what the model learns with it.

A default 5-fold training (one seed) takes about 30 s on 2 cores at the method's settings (100 epochs at
batch 16): 7 optimiser steps an epoch, about 10 ms a step, three rounds of folds on two workers. Only fewer
optimiser steps make it much faster, which changes the method's settings. This table is the evidence for
that decision. For each cohort and setting, it prints:
- the wall time of the 5-fold training (`run_cv`, one model per fold, --n-jobs workers);
- the held-out variance-weighted R^2 of the LPM beside reduced-rank ridge and ridge on the same folds,
  with all inputs and from genomics only (the mean over folds and target layers);
- how many read-outs the inner split chose deep (residual or blend), of all layers, inputs and folds; at 0
  the LPM predicts with its anchors alone, and its R^2 cannot show what the setting changed in the network;
- the PTM codes' signal-to-noise (`lpmlib.describe.posterior_snr` on held-out patients, the median over
  encoders and folds): below 1 the codes are mostly noise.

The cohorts are the default simulated cohort drawn with three simulation seeds, and CPTAC UCEC (the book's
`params/ucec.yaml`) when `../shared/data/cptac-ucec` exists. The learning rate of a larger batch follows
the automatic batch's square-root rule (`lpmlib.train.scaled_rate`). Every measurement runs in a fresh
process.

    .venv/bin/python benchmarks/train_settings.py           # every cohort and setting (9 minutes here)
    .venv/bin/python benchmarks/train_settings.py --cohorts 42 --settings 100:16 30:16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from train_speed import deep_read_outs, held_out_r2, in_child

PROJECT = Path(__file__).resolve().parents[1]
UCEC = "ucec"
UCEC_DATA = PROJECT.parent / "shared" / "data" / "cptac-ucec"
COHORTS = ("42", "7", "2026", UCEC)  # simulation seeds of the default cohort, and UCEC
SETTINGS = ("100:16", "100:32", "100:64", "50:32", "30:16")  # epochs:batch; the first is the method's
R2_METHODS = (  # Q0's, in the table's order
    "lpm_all",
    "reduced_rank_ridge_all",
    "ridge_all",
    "lpm_genomics_only",
    "reduced_rank_ridge_genomics_only",
)


def run_params(cohort: str, run_dir: str, data_dir: str):
    """The book's run parameters for a cohort: UCEC's, or the default's with this simulation seed (simulated
    into a new folder under `data_dir`: a folder that exists is read, not simulated into)."""
    from lpmlib.params import load_params

    if cohort == UCEC:
        overrides = {"run_dir": run_dir, "raw_data_dir": str(UCEC_DATA)}
        return load_params(PROJECT / "params" / "ucec.yaml", overrides)
    overrides = {"run_dir": run_dir, "data_dir": f"{data_dir}/simulated", "simulation_seed": int(cohort)}
    return load_params(PROJECT / "params" / "default.yaml", overrides)


def measure(cohort_name: str, epochs: int, batch: int, n_jobs: int) -> dict:
    """One row; runs in its own process."""
    import numpy as np

    from lpmlib.cv import run_cv
    from lpmlib.describe import posterior_snr_table
    from lpmlib.sources import cohort_source
    from lpmlib.train import scaled_rate

    with tempfile.TemporaryDirectory() as run_dir, tempfile.TemporaryDirectory() as data_dir:
        params = run_params(cohort_name, run_dir, data_dir)
        source = cohort_source(params)
        cohort = source.cohort()
        rate = scaled_rate(batch, params.learning_rate)
        settings = dataclasses.replace(
            params.train_settings(), epochs=epochs, batch_size=batch, learning_rate=rate
        )
        start = time.perf_counter()
        folds = run_cv(
            source.training_input(cohort),
            run_dir,
            settings,
            params.n_folds,
            params.seed,
            n_jobs,
            None,
            **params.hyperparameters(),
        )
        seconds = time.perf_counter() - start
        r2 = held_out_r2(folds, R2_METHODS)
        snr = posterior_snr_table(folds).to_numpy()
    return {
        "cohort": cohort_name,
        "patients": cohort.n_patients,
        "epochs": epochs,
        "batch": batch,
        "rate": rate,
        "seconds": seconds,
        "r2": {method: float(np.mean(list(by_layer.values()))) for method, by_layer in r2.items()},
        "deep": deep_read_outs(folds),
        "snr": float(np.median(snr)),
    }


HEADER = (
    f"{'cohort':<9} {'patients':>8} {'epochs':>6} {'batch':>5} {'lr':>7} {'seconds':>8}  "
    f"{'R^2 all inputs: LPM':>19} {'RRR':>6} {'ridge':>6}  {'genomics only: LPM':>18} {'RRR':>6}  "
    f"{'deep read-outs':>14} {'PTM SNR':>8}"
)


def format_row(row: dict) -> str:
    r2 = row["r2"]
    cohort = row["cohort"] if row["cohort"] == UCEC else f"sim {row['cohort']}"
    return (
        f"{cohort:<9} {row['patients']:>8} {row['epochs']:>6} {row['batch']:>5} {row['rate']:>7.1e} "
        f"{row['seconds']:>8.1f}  {r2['lpm_all']:>19.4f} {r2['reduced_rank_ridge_all']:>6.4f} "
        f"{r2['ridge_all']:>6.4f}  {r2['lpm_genomics_only']:>18.4f} "
        f"{r2['reduced_rank_ridge_genomics_only']:>6.4f}  {row['deep']:>14} {row['snr']:>8.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cohorts", nargs="*", default=list(COHORTS), help="simulation seeds, or 'ucec'")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), metavar="EPOCHS:BATCH")
    parser.add_argument("--n-jobs", type=int, default=2, help="workers of each 5-fold training")
    parser.add_argument("--row", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        cohort, epochs, batch, n_jobs = args.row
        print(json.dumps(measure(cohort, int(epochs), int(batch), int(n_jobs))))
        return
    cohorts = [c for c in args.cohorts if c != UCEC or UCEC_DATA.is_dir()]
    if len(cohorts) < len(args.cohorts):
        print(f"(no UCEC rows: {UCEC_DATA} is missing)")
    print(HEADER, flush=True)
    for cohort in cohorts:
        for setting in args.settings:
            epochs, batch = setting.split(":")
            print(
                format_row(in_child("--row", cohort, epochs, batch, str(args.n_jobs), script=__file__)),
                flush=True,
            )


if __name__ == "__main__":
    main()
