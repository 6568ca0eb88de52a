"""Where depth pays: held-out R^2 of the LPM and its baselines against the number of simulated patients.

Prints, per size, each target layer's cross-fold mean R^2 for the LPM, its deep path alone, ridge and
reduced-rank ridge (all inputs, then genomics only) beside the noise ceiling, the LPM minus ridge,
and the time each size took. The full table is written as CSV. Checkpoints are kept under --run-dir,
so a curve that was interrupted (or is extended by a larger size) resumes.

    .venv/bin/python benchmarks/cohort_size.py                              # 160, 640, 2560; 5 folds
    .venv/bin/python benchmarks/cohort_size.py --sizes 160 640 --folds 2 --nonlinearity 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from lpmlib.cohort_size import gains_over_ridge, r2_by_cohort_size
from lpmlib.train import TrainSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 640, 2560])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--nonlinearity", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=TrainSettings().epochs)
    parser.add_argument("--n-jobs", type=int, default=1, help="folds trained side by side")
    parser.add_argument("--run-dir", default="results/cohort_size")
    parser.add_argument(
        "--out", default=None, help="CSV of the full table (default: <run-dir>/r2_by_size.csv)"
    )
    args = parser.parse_args()

    run_dir = Path(args.run_dir) / f"nonlinearity{args.nonlinearity:g}_folds{args.folds}_epochs{args.epochs}"
    curves, seconds = [], {}
    for size in args.sizes:
        start = time.perf_counter()
        curves.append(
            r2_by_cohort_size(
                [size],
                run_dir,
                TrainSettings(epochs=args.epochs),
                args.folds,
                nonlinearity=args.nonlinearity,
                n_jobs=args.n_jobs,
            )
        )
        seconds[size] = time.perf_counter() - start
    curve = pd.concat(curves, ignore_index=True)
    out = Path(args.out) if args.out else run_dir / "r2_by_size.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    curve.to_csv(out, index=False)

    print(
        f"Held-out variance-weighted R^2, mean of {args.folds} folds; nonlinearity {args.nonlinearity:g}, "
        f"at most {args.epochs} epochs"
    )
    for inputs in ("all", "genomics_only"):
        rows = curve[curve["inputs"].isin([inputs, ""])]
        table = rows.pivot_table(index=["n_patients", "layer"], columns="model", values="mean", sort=False)
        print(f"\n{inputs.replace('_', ' ')} inputs\n{table.round(3).to_string()}")
    gains = gains_over_ridge(curve).pivot_table(
        index="n_patients", columns=["model", "layer", "inputs"], values="gain"
    )
    print(f"\nMinus ridge on the same folds\n{gains.round(3).to_string()}")
    print("\n" + "\n".join(f"{size:>6} patients: {s:7.1f} s" for size, s in seconds.items()))
    print(f"table: {out}")


if __name__ == "__main__":
    main()
