"""Writing run artifacts atomically, and hashing inputs for provenance."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd


def umask() -> int:
    """The process's umask, read from /proc where Linux tells it (os.umask can only read it by changing it,
    which other threads would see for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    A reader never sees a half-written artifact, and an interrupted run leaves the old one intact. The
    artifact gets the mode a plain `open()` would give it, not the 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_table(path: str | Path, table: pd.DataFrame, index: bool = True) -> Path:
    """A results table as CSV, written atomically (same table, same bytes)."""
    return atomic_write(path, lambda tmp: table.to_csv(tmp, index=index))


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_hashes(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every file in a folder (non-recursive), by file name."""
    folder = Path(folder)
    return {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
