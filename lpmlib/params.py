"""The parameters of a run: one schema, validated before any notebook executes.

Every notebook declares the subset it uses in its `parameters` cell; `lpm run` resolves the full set
(defaults < parameters file < command line), checks names and types here, and hands each notebook
only the names it declares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lpmlib.constraints import Constraints, Interval, Options, check
from lpmlib.model import ModelConfig
from lpmlib.simulate import SimulationConfig, read_truth
from lpmlib.tasks import SCHEDULER
from lpmlib.train import TrainSettings

# run parameter -> the SimulationConfig field it sets (the config's own defaults fill the rest)
SIMULATION_FIELDS = {"n_patients": "n_patients", "simulation_seed": "seed", "nonlinearity": "nonlinearity"}


class ParameterError(ValueError):
    """An unknown parameter name or a value of the wrong type."""


class UndeclaredParameterError(ParameterError):
    """A chapter read a parameter that its parameters cell does not declare."""


@dataclass(frozen=True)
class RunParams:
    """Everything a run of the book can be told; the defaults build the book on the simulated cohort."""

    data_dir: str = "data/simulated"  # cohort folder (seed layout); not used with a manifest
    manifest: str = ""  # a cohort manifest (YAML) of raw files, read instead of data_dir when set
    raw_data_dir: str = ""  # folder of the manifest's raw files ("": the manifest's own data_dir)
    simulate_if_missing: bool = True  # simulate the default cohort into data_dir when it is absent
    # the simulated cohort (defaults: SimulationConfig's)
    n_patients: int = SimulationConfig.n_patients  # patients of a simulated cohort
    simulation_seed: int = SimulationConfig.seed  # seed of the simulated cohort
    nonlinearity: float = SimulationConfig.nonlinearity  # how far from linear (0: the method's simulator)
    seed: int = 42  # global seed of every random step of the analysis
    n_folds: int = 5  # cross-validation folds
    run_dir: str = "results/default"  # where tables, figures and executed notebooks of the run go
    # training (defaults: TrainSettings', those of the method's reference implementation)
    epochs: int = TrainSettings.epochs  # the whole cosine schedule, no early stopping (lpmlib.train)
    batch_size: int = TrainSettings.batch_size
    learning_rate: float = TrainSettings.learning_rate
    weight_decay: float = TrainSettings.weight_decay
    grad_clip: float = TrainSettings.grad_clip
    anchor: str = TrainSettings.anchor  # the linear anchor nested in the model: ridge or reduced_rank_ridge
    n_seeds: int = 2  # models trained per fold, each with its own seed; the questions average their answers
    n_jobs: int = -1  # processes: chapters, folds and permutations side by side (-1: every core)
    scheduler: str = ""  # where trainings run: "" loky, "local" a Dask LocalCluster, or tcp://host:port
    device: str = TrainSettings.device  # "auto": CUDA when present, else the CPU
    # the questions
    knockout_gene: str = "FOXA1"  # Q1: the driver knocked out in detail
    fusion_gene: str = "ERG"  # Q2: the fusion deleted
    endpoint: str = ""  # Q6: the layer the leader predicts ("": the manifest's endpoint, else metabolome)
    top_features: int = 20  # Q1: features per layer shown after mapping back through the loadings
    ig_steps: int = 64  # Q3: integration steps of integrated gradients
    n_permutations: int = 0  # Q1: retrainings with the gene's column permuted (a null distribution)
    curve_sizes: tuple[int, ...] = ()  # patients of each cohort of the cohort-size chapter (none: skipped)
    pca_layer: str = ""  # data chapter: layer shown in the PCA view ("": the first target layer)
    colour_driver: str = ""  # data chapter: driver whose status colours the PCA view ("": the first)
    # the model (defaults: ModelConfig's)
    latent_dim: int = ModelConfig.latent_dim
    vae_latent_dim: int = ModelConfig.vae_latent_dim
    n_heads: int = ModelConfig.n_heads
    dropout: float = ModelConfig.dropout
    beta_kl: float = ModelConfig.beta_kl
    contrastive_weight: float = ModelConfig.contrastive_weight
    temperature: float = ModelConfig.temperature

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "parameters") -> RunParams:
        """Validated parameters; an unknown name or a wrongly typed value is an error naming it."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = dict(values)
        for name, value in values.items():
            if name not in fields:
                raise ParameterError(f"{source}: unknown parameter '{name}'. Accepted: {', '.join(fields)}.")
            expected = type(getattr(cls(), name))
            value = values[name] = _from_yaml(value, expected)
            if not _is_instance(value, expected):
                kind = "a list of integers" if expected is tuple else expected.__name__
                raise ParameterError(f"{source}: parameter '{name}' must be {kind}, got {value!r}")
        params = cls(**values)
        params.check()
        return params

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> ChapterParams:
        """The parameters a notebook declared (its globals); reading another is an error (`ChapterParams`)."""
        declared = {k: v for k, v in namespace.items() if k in cls.__dataclass_fields__}
        params = cls.from_mapping(declared, source="notebook parameters")
        return ChapterParams.of(params, declared)

    def check(self) -> None:
        """Every value against its constraint (`constraints`), then what holds between values."""
        check(dataclasses.asdict(self), constraints(), "parameter", ParameterError)
        if self.n_patients < self.n_folds:
            raise ParameterError(f"n_patients ({self.n_patients}) must be >= n_folds ({self.n_folds})")
        if self.latent_dim % self.n_heads:
            raise ParameterError(
                f"latent_dim ({self.latent_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        sizes = self.curve_sizes
        if any(size < self.n_folds for size in sizes) or len(set(sizes)) < len(sizes):
            raise ParameterError(
                f"curve_sizes must be distinct sizes of at least n_folds ({self.n_folds}) patients, "
                f"got {list(sizes)}"
            )

    def simulation_config(self) -> SimulationConfig:
        """The cohort to simulate when `data_dir` does not exist."""
        return SimulationConfig(**{field: getattr(self, name) for name, field in SIMULATION_FIELDS.items()})

    def check_simulated_folder(self, data_dir: str | Path) -> None:
        """A simulated folder must hold the cohort that the simulation parameters set away from their
        defaults ask for: otherwise `-p nonlinearity=1` (say) would silently analyse the old cohort. At
        their defaults they ask for nothing, so a folder made by `lpm simulate` is analysed as it is."""
        truth = read_truth(data_dir)
        if truth is None:
            return  # the user's own seed-layout cohort
        defaults = SimulationConfig()  # a field left out of truth.json is at its default
        found = {
            name: truth["config"].get(field, getattr(defaults, field))
            for name, field in SIMULATION_FIELDS.items()
        }
        asked = {
            name: getattr(self, name)
            for name in SIMULATION_FIELDS
            if getattr(self, name) != getattr(RunParams(), name)
        }
        differences = [
            f"{name}={found[name]} (asked: {value})" for name, value in asked.items() if found[name] != value
        ]
        if differences:
            raise ParameterError(
                f"'{data_dir}' holds a cohort simulated with {', '.join(differences)}. Give another data_dir "
                "for the cohort you ask for, or delete this folder to simulate it again."
            )

    def train_settings(self) -> TrainSettings:
        return TrainSettings(**{name: getattr(self, name) for name in TRAINING_FIELDS})

    def hyperparameters(self) -> dict[str, Any]:
        """The model's hyperparameters, as ModelConfig takes them."""
        return {name: getattr(self, name) for name in ModelConfig.HYPERPARAMETERS}

    def replace(self, **changes: Any) -> RunParams:
        return RunParams.from_mapping({**dataclasses.asdict(self), **changes})

    def as_dict(self) -> dict[str, Any]:
        """The parameters as YAML and JSON hold them (and papermill passes them): tuples as lists."""
        values = dataclasses.asdict(self)
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


class ChapterParams(RunParams):
    """The parameters of one chapter. `lpm run` hands a chapter only the parameters its parameters cell
    declares, so any other would silently keep its default whatever the run says (`-p epochs=10` would
    not reach a training the chapter starts): reading one is an error that names it."""

    declared: frozenset[str]

    @classmethod
    def of(cls, params: RunParams, declared: Iterable[str]) -> ChapterParams:
        chapter = cls(**{name: getattr(params, name) for name in RunParams.__dataclass_fields__})
        object.__setattr__(chapter, "declared", frozenset(declared))
        return chapter

    def __getattribute__(self, name: str) -> Any:
        if name in RunParams.__dataclass_fields__ and name not in object.__getattribute__(self, "declared"):
            raise UndeclaredParameterError(
                f"this chapter reads the parameter '{name}', which its parameters cell does not declare: "
                f"`lpm run` would leave it at its default whatever the run says. Add '{name}' to the "
                "chapter's parameters cell."
            )
        return object.__getattribute__(self, name)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self.declared))
        return f"ChapterParams({shown})"


TRAINING_FIELDS = tuple(
    f.name for f in dataclasses.fields(TrainSettings) if f.name in RunParams.__dataclass_fields__
)


def constraints() -> Constraints:
    """What each parameter must be: the constraints of the class that owns it (training, model,
    simulation), and the run's own."""
    simulation = SimulationConfig.constraints()
    return {
        **{name: TrainSettings.CONSTRAINTS[name] for name in TRAINING_FIELDS},
        **{name: ModelConfig.CONSTRAINTS[name] for name in ModelConfig.HYPERPARAMETERS},
        **{name: simulation[field] for name, field in SIMULATION_FIELDS.items()},
        "seed": Interval(int, 0, 2**32, closed="left"),
        "n_folds": Interval(int, 2),
        "n_seeds": Interval(int, 1),
        "n_jobs": (Interval(int, 1), Options((-1,))),
        "scheduler": SCHEDULER,
        "top_features": Interval(int, 1),
        "ig_steps": Interval(int, 1),
        "n_permutations": Interval(int, 0),
    }


def _from_yaml(value: Any, expected: type) -> Any:
    """YAML 1.1 reads '1e-3' as a string: take it as the float it means; a list is the tuple it means."""
    if expected is tuple and isinstance(value, list):
        return tuple(value)
    if expected is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_instance(value: Any, expected: type) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is tuple:
        return isinstance(value, tuple) and all(_is_instance(item, int) for item in value)
    return isinstance(value, expected)


def load_params(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunParams:
    """Defaults, updated by a YAML parameters file, updated by explicit overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ParameterError(f"parameters file '{path}' not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ParameterError(f"parameters file '{path}' must hold a mapping of names to values")
        RunParams.from_mapping(loaded, source=str(path))
        values.update(loaded)
    values.update(overrides or {})
    return RunParams.from_mapping(values, source=str(path) if path and not overrides else "parameters")


def parse_override(text: str) -> tuple[str, Any]:
    """`name=value` from the command line, the value read as YAML (so 3 is int, true is bool)."""
    if "=" not in text:
        raise ParameterError(f"expected name=value, got '{text}'")
    name, raw = text.split("=", 1)
    return name.strip(), yaml.safe_load(raw)
