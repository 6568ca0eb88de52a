"""Provenance of a run: what was run, on what, with which software, and how to run it again."""

from __future__ import annotations

import dataclasses
import json
import platform
import shlex
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd

from lpmlib.params import RunParams

PACKAGES = (
    "lpmlib",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "torch",
    "captum",
    "statsmodels",
    "papermill",
    "jupyter-book",
    "myst-nb",
)


def git_commit(project: Path) -> str:
    """The project's git commit, marked `+changes` when the work tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_record(params: RunParams, project: Path) -> dict:
    """Everything about a run that is known before its notebooks execute."""
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(project),
        "platform": platform.platform(),
        "packages": package_versions(),
        "parameters": params.as_dict(),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def parameter_table(params: RunParams) -> pd.DataFrame:
    """The run's parameters with their defaults, those changed from the default marked."""
    defaults = RunParams()
    rows = [
        {
            "parameter": f.name,
            "value": getattr(params, f.name),
            "default": getattr(defaults, f.name),
            "changed": getattr(params, f.name) != getattr(defaults, f.name),
        }
        for f in dataclasses.fields(RunParams)
    ]
    return pd.DataFrame(rows).astype({"value": str, "default": str})


def papermill_command(notebook: str, params: RunParams, declared: set[str], **changes: object) -> str:
    """The shell command that re-executes one chapter of this run (with optional changed parameters)."""
    values = {k: v for k, v in {**params.as_dict(), **changes}.items() if k in declared}
    defaults = RunParams().as_dict()
    arguments = [
        f"-p {k} {shlex.quote(str(v))}" for k, v in values.items() if k in changes or v != defaults[k]
    ]
    target = f"{params.run_dir}/notebooks/{notebook}"
    return " ".join([".venv/bin/python -m papermill -k lpm", f"notebooks/{notebook}", target, *arguments])
