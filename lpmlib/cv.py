"""Cross-validated training: folds, checkpoints that resume, and held-out predictions.

Each fold trains `n_seeds` models on its training patients (each with its own seed and its own 20% of
them held back as the inner split that chooses each layer's read-outs; see `lpmlib.train`), writes a
checkpoint per model (weights + a JSON record) atomically, and stores the predictions of every layer for
its held-out patients under every masking pattern the questions use, beside the weights. A fold's result
reads each from there when a question asks for it (`StoredPredictions`): held in memory, those of five
folds of 16,000 patients take 1.2 GB. A finished model is reused when the data, configuration and
split are unchanged and its weights are intact.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import json
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import KFold, train_test_split

from lpmlib import linear as linear_module
from lpmlib import model as model_module
from lpmlib import train as train_module
from lpmlib.artifacts import atomic_write, sha256, write_json, write_table
from lpmlib.cohort import N_GRADES, Cohort
from lpmlib.manifest import RawCohort
from lpmlib.model import LatentPerturbationModel, ModelConfig, masking_patterns
from lpmlib.preprocess import PipelineSettings
from lpmlib.stats import SEED
from lpmlib.tasks import n_workers as n_workers  # re-exported: the runner sizes its pool of chapters with it
from lpmlib.tasks import run_tasks, runs_here
from lpmlib.tensors import CohortTensors, LayerScaler
from lpmlib.train import TrainSettings, fit, make_deterministic, seed_one_thread

Log = Callable[[str], None]


def fold_splits(n_patients: int, n_folds: int = 5, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training and held-out row indices of each fold: KFold with shuffling."""
    return list(KFold(n_folds, shuffle=True, random_state=seed).split(np.arange(n_patients)))


def model_config(cohort: Cohort, **hyperparameters) -> ModelConfig:
    """The model's shape for a cohort: every PTM layer in and out, every target out, each decoded from
    the state and its parents' predictions (`Cohort.target_parents`: protein from RNA, the flow)."""
    order, parents = cohort.target_order, cohort.target_parents
    return ModelConfig(
        n_drivers=len(cohort.driver_names),
        n_grades=N_GRADES,
        ptm_dims={n: cohort.layers[n].n_features for n in cohort.ptm_names},
        target_dims={n: cohort.layers[n].n_features for n in order},
        target_parents=parents,
        **hyperparameters,
    )


def cohort_fingerprint(cohort: Cohort) -> str:
    """A hash of every value the model sees, so a checkpoint is reused only on the same data."""
    digest = hashlib.sha256()
    for frame in [cohort.clinical[["grade"]], cohort.drivers] + [
        cohort.layers[n].values for n in cohort.layers
    ]:
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


@dataclass
class FoldResult:
    """One trained fold: its model, scaler, split, history and held-out predictions."""

    fold: int
    model: LatentPerturbationModel
    scaler: LayerScaler
    train_rows: np.ndarray
    test_rows: np.ndarray
    history: pd.DataFrame
    # pattern -> layer -> (n_test, n_features), original units; training's are read from the run folder
    predictions: Mapping[str, Mapping[str, np.ndarray]]
    read_out: pd.DataFrame = dataclasses.field(
        default_factory=pd.DataFrame
    )  # per layer, chosen on the inner split
    reused: bool = False
    # the values the fold's model works on (a raw cohort preprocessed on its training patients), set by
    # training and loading; every question and counterfactual reads the cohort from here
    cohort: Cohort | None = None
    training_seed: int = 1  # which of the fold's models (1 .. n_seeds)

    @property
    def keys(self) -> dict[str, int]:
        """The columns that name this model in per-model rows: its fold and its training seed."""
        return {"fold": self.fold, SEED: self.training_seed}

    @property
    def label(self) -> str:
        return model_label(self.fold, self.training_seed)


def fold_cohorts(source: Cohort | RawCohort, splits, pipeline: PipelineSettings | None) -> list[Cohort]:
    """One model-ready cohort per fold (`fold_cohort`): the cohort itself, or a raw cohort preprocessed on
    the fold's training patients only (so held-out patients never inform the preprocessing), with
    `pipeline` for every layer or, when None, each layer's settings from the manifest."""
    return [source.fold_cohort(train, pipeline) for train, _ in splits]


def model_label(fold: int, training_seed: int) -> str:
    """'fold 2' for a fold's first model, 'fold 2, seed 3' for its others."""
    return f"fold {fold}" + (f", seed {training_seed}" if training_seed > 1 else "")


def model_seed(seed: int, fold: int, training_seed: int) -> int:
    """The seed of one model's initialisation, batches, masks and inner split: `seed + fold` for a fold's
    first model (as with one model per fold), 1000 further for each next one."""
    return seed + fold + 1000 * (training_seed - 1)


def inner_split(
    train_rows: np.ndarray, settings: TrainSettings, own_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A fold's training patients: those that train the network, and the inner split that chooses the
    read-outs (`settings.validation_fraction` of them), drawn with the model's own seed."""
    return train_test_split(train_rows, test_size=settings.validation_fraction, random_state=own_seed)


def fold_models(n_folds: int, n_seeds: int) -> list[tuple[int, int]]:
    """(fold, training seed) of every model of a run, ordered by fold, then seed (both from 1)."""
    return [(k, s) for k in range(1, n_folds + 1) for s in range(1, n_seeds + 1)]


class FoldStore:
    """The files of one model under `<run>/cv/fold<k>/` (the fold's first) or `<run>/cv/fold<k>/seed<s>/`."""

    def __init__(self, run_dir: str | Path, fold: int, training_seed: int = 1) -> None:
        self.folder = Path(run_dir) / "cv" / f"fold{fold}"
        if training_seed > 1:
            self.folder = self.folder / f"seed{training_seed}"
        self.weights = self.folder / "model.pt"
        self.record = self.folder / "model.json"
        self.history = self.folder / "history.csv"
        self.predictions = self.folder / "predictions.npz"

    def stored_predictions(self, weights_sha256: str) -> StoredPredictions:
        """The held-out predictions of the model whose weights have this digest."""
        return StoredPredictions(self.predictions, weights_sha256)

    def load_if_valid(self, key: str | None = None) -> tuple[LatentPerturbationModel, dict] | None:
        """The saved model when its weights are intact (and its key matches `key`, if given)."""
        try:
            record = json.loads(self.record.read_text())
            if (key is not None and record["key"] != key) or sha256(self.weights) != record["weights_sha256"]:
                return None
            model = LatentPerturbationModel(ModelConfig.from_dict(record["config"]))
            model.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
            return model.eval(), record
        except (OSError, ValueError, KeyError, RuntimeError, EOFError):
            return None


@functools.cache
def training_code_hash() -> str:
    """SHA-256 of the model's, the anchors' and the training's code: a checkpoint trained by other code is
    stale. The code is read as its syntax tree without docstrings, so that formatting, comments and
    documentation leave checkpoints valid. Computed once per process (0.14 s: two per fold otherwise)."""
    trees = [
        _without_docstrings(ast.parse(inspect.getsource(m)))
        for m in (model_module, linear_module, train_module)
    ]
    return hashlib.sha256("".join(ast.dump(tree) for tree in trees).encode()).hexdigest()


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _is_docstring(statement: ast.stmt) -> bool:
    value = getattr(statement, "value", None)
    return (
        isinstance(statement, ast.Expr) and isinstance(value, ast.Constant) and isinstance(value.value, str)
    )


def _fold_key(fingerprint: str, config: ModelConfig, settings: TrainSettings, seed: int, train_rows) -> str:
    """What a checkpoint was trained from: data, configuration, settings, seed, patients and code."""
    payload = json.dumps(
        {
            "data": fingerprint,
            "config": config.to_dict(),
            "settings": settings.to_dict(),
            "seed": seed,
            "train_rows": [int(r) for r in train_rows],
            "code": training_code_hash(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def train_fold(
    cohort: Cohort,
    fold: int,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    config: ModelConfig,
    settings: TrainSettings,
    seed: int,
    run_dir: str | Path,
    fingerprint: str,
    log: Log | None = None,
    training_seed: int = 1,
) -> FoldResult:
    """Train (or reuse) one model of a fold and write its held-out predictions beside it. The result reads
    them from there, and carries no cohort: the caller holds it, so a worker sends back no copy."""
    store = FoldStore(run_dir, fold, training_seed)
    own_seed = model_seed(seed, fold, training_seed)
    key = _fold_key(fingerprint, config, settings, own_seed, train_rows)
    scaler = LayerScaler.fit(cohort, train_rows)
    loaded = store.load_if_valid(key)
    if loaded is not None:
        model, record = loaded
        history, read_out = pd.read_csv(store.history), pd.DataFrame(record["read_out"])
        if log:
            log(f"fold {fold}: reusing the finished checkpoint")
    else:
        inner_train, inner_validation = inner_split(train_rows, settings, own_seed)
        progress = None
        if log:
            progress = functools.partial(_log_epoch, log, model_label(fold, training_seed))
        result = fit(
            config,
            CohortTensors.build(cohort, inner_train, scaler),
            CohortTensors.build(cohort, inner_validation, scaler),
            settings,
            own_seed,
            progress,
        )
        model, history, read_out = result.model, result.history, result.read_out
        record = {
            "key": key,
            "fold": fold,
            SEED: training_seed,
            "data": fingerprint,
            "code": training_code_hash(),
            "config": config.to_dict(),
            "read_out": read_out.to_dict(orient="records"),
            "test_case_ids": list(cohort.case_ids[test_rows]),
        }
        record = _save(store, model, history, record)
    data = CohortTensors.build(cohort, test_rows, scaler)
    patterns = predict_patterns(model, data, scaler, cohort.ptm_names)
    case_ids, weights = cohort.case_ids[test_rows], record["weights_sha256"]
    atomic_write(
        store.predictions,
        functools.partial(_save_npz, case_ids=case_ids, weights_sha256=weights, patterns=patterns),
    )
    predictions = store.stored_predictions(weights)
    fold_result = FoldResult(fold, model, scaler, train_rows, test_rows, history, predictions, read_out)
    return dataclasses.replace(fold_result, reused=loaded is not None, training_seed=training_seed)


def _log_epoch(log: Log, label: str, row: dict) -> None:
    """A line for each epoch at which the inner split was evaluated (`train.READ_OUT_EVERY`, the last)."""
    if not np.isnan(row["validation_loss"]):
        log(
            f"{label} epoch {row['epoch']:3d}: train {row['train_loss']:.4f}  "
            f"validation {row['validation_loss']:.4f}"
        )


def _save(store: FoldStore, model, history: pd.DataFrame, record: dict) -> dict:
    """Write the model's history, weights and record; the record as written (with the weights' digest)."""
    store.folder.mkdir(parents=True, exist_ok=True)
    write_table(store.history, history, index=False)
    atomic_write(store.weights, lambda tmp: _save_weights(model, tmp))
    record = record | {"weights_sha256": sha256(store.weights)}
    write_json(store.record, record)
    return record


def _save_weights(model, path: Path) -> None:
    """The state dict, through an open file: torch names the archive inside after a path's file name,
    which for a temporary file is random, so only a file handle gives the same bytes for the same weights."""
    with open(path, "wb") as handle:
        torch.save(model.state_dict(), handle)


CASE_ID, WEIGHTS = "case_id", "weights_sha256"  # the predictions file's members beside `<pattern>/<layer>`


def _save_npz(
    path: Path, case_ids: pd.Index, weights_sha256: str, patterns: Iterator[tuple[str, dict[str, np.ndarray]]]
) -> None:
    """An .npz that `np.load` reads: the held-out case IDs, the digest of the weights that made the
    predictions, and the predictions written one pattern at a time as they are made. Every member has a
    fixed date (np.savez stamps the time), so the same predictions give the same bytes on any worker."""
    with zipfile.ZipFile(path, "w") as archive:

        def add(name: str, values) -> None:
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(member, "w") as entry:
                np.lib.format.write_array(entry, np.asarray(values), allow_pickle=False)

        add(CASE_ID, np.asarray(case_ids, dtype=str))
        add(WEIGHTS, np.asarray(weights_sha256))
        for pattern, layers in patterns:
            for layer, values in layers.items():
                add(f"{pattern}/{layer}", values)


class StoredPredictions(Mapping[str, Mapping[str, np.ndarray]]):
    """A model's held-out predictions, pattern -> layer -> values, read from its predictions file when a
    question asks for one, so that a run holds none of them in memory. The file must carry the digest of
    the model's weights, checked at every read: otherwise it holds another model's predictions (a training
    stopped between writing the weights and the predictions, or run again since)."""

    def __init__(self, path: Path, weights_sha256: str) -> None:
        self.path, self.weights_sha256 = Path(path), weights_sha256
        with self._open() as arrays:
            members = [name.split("/", 1) for name in arrays.files if "/" in name]
        self._layers: dict[str, list[str]] = {}
        for pattern, layer in members:
            self._layers.setdefault(pattern, []).append(layer)

    def read(self, pattern: str, layer: str) -> np.ndarray:
        with self._open() as arrays:
            return arrays[f"{pattern}/{layer}"]

    def _open(self) -> np.lib.npyio.NpzFile:
        try:
            arrays = np.load(self.path)
        except (OSError, ValueError) as error:
            raise self._stale() from error
        if WEIGHTS not in arrays.files or str(arrays[WEIGHTS]) != self.weights_sha256:
            arrays.close()
            raise self._stale()
        return arrays

    def _stale(self) -> MissingTrainingError:
        return MissingTrainingError(
            f"'{self.path}' does not hold the held-out predictions of the model saved beside it: run the "
            "training chapter (03_cv_training) again, which reuses the model and writes them"
        )

    def __getitem__(self, pattern: str) -> Mapping[str, np.ndarray]:
        return _StoredPattern(self, pattern, self._layers[pattern])

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)


@dataclass(frozen=True)
class _StoredPattern(Mapping[str, np.ndarray]):
    """One pattern's layers of `StoredPredictions`, each read when asked for."""

    store: StoredPredictions
    pattern: str
    layers: list[str]

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer not in self.layers:
            raise KeyError(layer)
        return self.store.read(self.pattern, layer)

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)


DEEP = "deep:"  # prefix of the patterns' predictions by the deep path alone (the direct read-out)


@torch.no_grad()
def predict_patterns(
    model: LatentPerturbationModel, data: CohortTensors, scaler: LayerScaler, ptm_names: list[str]
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Predictions of every layer, in original units, under every named masking pattern (full batch),
    one pattern at a time; after each, under `deep:<pattern>`, those of the deep path alone."""
    ptms = {name: data.layers[name] for name in ptm_names}
    for pattern, output in model.under_masks(data.drivers, data.grade, ptms, masking_patterns(ptm_names)):
        yield (
            pattern,
            {n: scaler.original_units(n, p.double().numpy()) for n, p in output.predictions.items()},
        )
        if output.paths:
            direct = output.paths["direct"]
            yield DEEP + pattern, {n: scaler.original_units(n, p.double().numpy()) for n, p in direct.items()}


def run_cv(
    cohort: Cohort | RawCohort,
    run_dir: str | Path,
    settings: TrainSettings = TrainSettings(),
    n_folds: int = 5,
    seed: int = 42,
    n_jobs: int = 1,
    log: Log | None = print,
    pipeline: PipelineSettings | None = None,
    n_seeds: int = 1,
    scheduler: str = "",
    **hyperparameters,
) -> list[FoldResult]:
    """Train `n_seeds` models per fold (side by side with `n_jobs`, -1: every core, on the backend that
    `scheduler` names: see `lpmlib.tasks`), reusing those already finished; the results are ordered by
    fold, then training seed.

    A raw cohort (from a manifest) is preprocessed per fold with `pipeline`, fitted on that fold's
    training patients; each result then keeps its view in `FoldResult.cohort`. Each model's task writes
    its checkpoint under the absolute `run_dir`, so that a Dask worker started elsewhere writes into
    the same run folder (on a shared filesystem for workers on other machines).
    """
    make_deterministic(seed)
    splits = fold_splits(cohort.n_patients, n_folds, seed)
    views = fold_cohorts(cohort, splits, pipeline)
    models = fold_models(n_folds, n_seeds)
    in_process = runs_here(n_jobs, len(models), scheduler)
    tasks = [
        (
            views[k - 1],
            k,
            *splits[k - 1],
            model_config(views[k - 1], **hyperparameters),
            settings,
            seed,
            Path(run_dir).absolute(),
            cohort_fingerprint(views[k - 1]),
            log if in_process else None,
            s,
        )
        for k, s in models
    ]
    results = run_tasks(train_fold, tasks, n_jobs, scheduler)
    for result in results:
        result.cohort = views[result.fold - 1]
    if log and not in_process:
        for result in results:
            done = "reused" if result.reused else "trained"
            log(f"fold {result.fold}, seed {result.training_seed}: {done}, {len(result.history) - 1} epochs")
    return results


class MissingTrainingError(FileNotFoundError):
    """A run folder lacks a trained fold for this cohort: the training chapter has to run first."""


def load_folds(
    cohort: Cohort | RawCohort,
    run_dir: str | Path,
    n_folds: int = 5,
    seed: int = 42,
    pipeline: PipelineSettings | None = None,
    n_seeds: int = 1,
) -> list[FoldResult]:
    """The trained models of a run folder (`n_seeds` per fold, ordered by fold, then training seed),
    checked against this cohort and split; nothing is retrained.

    Question chapters use this, so that re-running one with another gene never trains a model. The
    models then run seeded on one thread, as in training (many threads on these small batches cost far
    more than they save, and on a busy machine they wait on each other).
    """
    seed_one_thread(seed)
    results = []
    splits = fold_splits(cohort.n_patients, n_folds, seed)
    views = fold_cohorts(cohort, splits, pipeline)
    for k, s in fold_models(n_folds, n_seeds):
        (train_rows, test_rows), view = splits[k - 1], views[k - 1]
        store = FoldStore(run_dir, k, s)
        loaded = store.load_if_valid()
        hint = (
            f"run the training chapter (03_cv_training) with run_dir='{run_dir}' and n_seeds={n_seeds} first"
        )
        if loaded is None:
            raise MissingTrainingError(
                f"no intact trained model for fold {k}, training seed {s} in '{store.folder}': {hint}"
            )
        model, record = loaded
        if record.get("data") != cohort_fingerprint(view) or record.get("test_case_ids") != list(
            view.case_ids[test_rows]
        ):
            raise MissingTrainingError(
                f"fold {k} in '{store.folder}' was trained on other data or folds: {hint}"
            )
        if record.get("code") != training_code_hash():
            raise MissingTrainingError(
                f"fold {k} in '{store.folder}' was trained by another version of lpmlib: {hint}"
            )
        scaler, history, read_out = (
            LayerScaler.fit(view, train_rows),
            pd.read_csv(store.history),
            record["read_out"],
        )
        predictions = store.stored_predictions(record["weights_sha256"])
        fold = FoldResult(
            k, model, scaler, train_rows, test_rows, history, predictions, pd.DataFrame(read_out)
        )
        results.append(dataclasses.replace(fold, reused=True, cohort=view, training_seed=s))
    return results
