"""Run parameters: defaults, files, overrides and the errors for bad ones."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import papermill
import pytest
import yaml

from lpmlib.model import ModelConfig
from lpmlib.params import (
    SIMULATION_FIELDS,
    TRAINING_FIELDS,
    ParameterError,
    RunParams,
    UndeclaredParameterError,
    load_params,
    parse_override,
)
from lpmlib.simulate import SimulationConfig, simulate_cohort, write_simulated_cohort
from lpmlib.train import TrainSettings


def test_defaults_build_the_book_on_the_simulated_cohort() -> None:
    params = load_params()
    assert params == RunParams()
    assert params.seed == 42 and params.n_patients == 160 and params.data_dir == "data/simulated"


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("n_patients: 60\nseed: 7\n")
    params = load_params(path, {"seed": 8})
    assert (params.n_patients, params.seed) == (60, 8)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n_patient": 3}, "unknown parameter 'n_patient'. Accepted: data_dir"),
        ({"n_patients": "many"}, "'n_patients' must be int, got 'many'"),
        ({"simulate_if_missing": 1}, "'simulate_if_missing' must be bool"),
        ({"n_patients": 3}, "n_patients (3) must be >= n_folds (5)"),
        ({"n_jobs": 0}, "parameter 'n_jobs' must be an integer >= 1 or one of -1, got 0"),
        ({"n_seeds": 0}, "parameter 'n_seeds' must be an integer >= 1, got 0"),
        ({"learning_rate": -1}, "parameter 'learning_rate' must be a finite number > 0, got -1"),
        ({"batch_size": -1}, "parameter 'batch_size' must be an integer >= 0, got -1"),
        (
            {"device": "tpu"},
            "parameter 'device' must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', got 'tpu'",
        ),
        ({"dropout": 1.0}, "parameter 'dropout' must be a finite number >= 0 and < 1, got 1.0"),
        ({"anchor": "lasso"}, "parameter 'anchor' must be one of 'ridge', 'reduced_rank_ridge', got 'lasso'"),
        ({"latent_dim": 18}, "latent_dim (18) must be divisible by n_heads (4)"),
        ({"nonlinearity": -0.5}, "parameter 'nonlinearity' must be a finite number >= 0, got -0.5"),
    ],
)
def test_bad_parameters_name_the_parameter(values: dict, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        RunParams.from_mapping(values)
    assert message in str(info.value)


def test_bad_parameter_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("epochz: 3\n")
    with pytest.raises(ParameterError, match=r"p\.yaml: unknown parameter 'epochz'"):
        load_params(path)


def test_overrides_are_read_as_yaml() -> None:
    assert parse_override("n_patients=40") == ("n_patients", 40)
    assert parse_override("simulate_if_missing=false") == ("simulate_if_missing", False)
    assert parse_override("data_dir=data/x") == ("data_dir", "data/x")
    with pytest.raises(ParameterError, match="name=value"):
        parse_override("n_patients")


def test_curve_sizes_are_a_list_of_distinct_sizes_passed_on_as_a_list() -> None:
    params = load_params(overrides=dict([parse_override("curve_sizes=[160, 640]")]))
    assert params.curve_sizes == (160, 640) and params.as_dict()["curve_sizes"] == [160, 640]
    with pytest.raises(ParameterError, match="'curve_sizes' must be a list of integers, got 160"):
        load_params(overrides={"curve_sizes": 160})
    with pytest.raises(ParameterError, match="'curve_sizes' must be a list of integers"):
        load_params(overrides={"curve_sizes": [160, "x"]})
    with pytest.raises(ParameterError, match=r"at least n_folds \(5\) patients, got \[160, 3\]"):
        load_params(overrides={"curve_sizes": [160, 3]})
    with pytest.raises(ParameterError, match="distinct"):
        load_params(overrides={"curve_sizes": [160, 160]})


@pytest.mark.parametrize(
    ("owner", "names"),
    [
        (TrainSettings, TRAINING_FIELDS),
        (ModelConfig, ModelConfig.HYPERPARAMETERS),
        (SimulationConfig, tuple(SIMULATION_FIELDS.values())),
    ],
)
def test_each_default_is_written_once_by_the_class_that_owns_it(owner: type, names: tuple[str, ...]) -> None:
    """A run's training, model and simulation parameters take their defaults and constraints from their
    owner, so changing a default there changes it for the run."""
    as_run = {field: name for name, field in SIMULATION_FIELDS.items()} if owner is SimulationConfig else {}
    owned = {f.name: f for f in dataclasses.fields(owner)}
    run_fields = {f.name: f for f in dataclasses.fields(RunParams)}
    assert names
    for name in names:
        run_name = as_run.get(name, name)
        assert run_fields[run_name].default == owned[name].default, name
        assert run_fields[run_name].type == owned[name].type, name


NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_each_notebooks_parameters_are_run_parameters_at_their_defaults(notebook: Path) -> None:
    declared = papermill.inspect_notebook(str(notebook))
    defaults = RunParams().as_dict()
    assert declared, f"{notebook.name} declares no parameters"
    for name, parameter in declared.items():
        assert name in defaults, f"{notebook.name}: '{name}' is not a run parameter"
        value = ast.literal_eval(parameter["default"])
        assert value == defaults[name] and type(value) is type(defaults[name]), (notebook.name, name, value)


TRAINING_CALLS = ("workflow.train_folds", "workflow.knockout_null", "workflow.cohort_size_curve")
TRAINING_CHAPTERS = [nb for nb in NOTEBOOKS if any(call in nb.read_text() for call in TRAINING_CALLS)]


def test_three_chapters_train() -> None:
    assert [nb.stem for nb in TRAINING_CHAPTERS] == [
        "03_cv_training",
        "04_q1_gene_knockout",
        "12_cohort_size",
    ]


@pytest.mark.parametrize("notebook", TRAINING_CHAPTERS, ids=lambda path: path.stem)
def test_each_chapter_that_trains_declares_every_parameter_of_a_training(notebook: Path) -> None:
    """A chapter receives only the parameters it declares, so an undeclared one takes its default: a
    permutation null would then train other models than the run it is the null of."""
    every = {*TRAINING_FIELDS, *ModelConfig.HYPERPARAMETERS, "seed", "n_folds", "n_jobs", "scheduler"}
    missing = every - set(papermill.inspect_notebook(str(notebook)))
    assert not missing, f"{notebook.name} trains but does not declare {sorted(missing)}"


def test_a_chapter_reads_only_the_parameters_it_declares() -> None:
    """What a notebook declares is validated and read; reading any other run parameter is an error that
    names it, since the run would not have handed it over (ModelConfig's hyperparameters read them all)."""
    declared = {"seed": 7, "latent_dim": 32, "figure": "not a parameter"}
    params = RunParams.from_namespace(declared)
    assert (params.seed, params.latent_dim) == (7, 32)
    assert repr(params) == "ChapterParams(latent_dim=32, seed=7)"
    with pytest.raises(UndeclaredParameterError, match="parameter 'n_folds'.*Add 'n_folds'"):
        params.n_folds
    with pytest.raises(UndeclaredParameterError, match="'vae_latent_dim'"):
        params.hyperparameters()
    every = RunParams.from_namespace(dataclasses.asdict(RunParams()) | {"epochs": 3})
    assert every.train_settings() == TrainSettings(epochs=3)
    with pytest.raises(ParameterError, match="parameter 'seed' must be int"):
        RunParams.from_namespace({"seed": "seven"})


def test_the_default_file_lists_every_parameter_at_its_default() -> None:
    listed = yaml.safe_load((Path(__file__).resolve().parents[1] / "params/default.yaml").read_text())
    assert listed == RunParams().as_dict()


def test_a_simulated_folder_must_hold_the_cohort_the_changed_simulation_parameters_ask_for(tmp_path) -> None:
    folder = write_simulated_cohort(
        simulate_cohort(SimulationConfig(n_patients=30, seed=7)), tmp_path / "sim"
    )
    RunParams().check_simulated_folder(
        folder
    )  # at their defaults they ask for nothing: `lpm simulate`'s folder
    RunParams(n_patients=30, simulation_seed=7).check_simulated_folder(folder)
    with pytest.raises(ParameterError, match=r"n_patients=30 \(asked: 60\)") as error:
        RunParams(n_patients=60).check_simulated_folder(folder)
    assert "simulation_seed" not in str(error.value) and "another data_dir" in str(error.value)
    with pytest.raises(ParameterError, match=r"nonlinearity=0.0 \(asked: 1.0\)"):
        RunParams(nonlinearity=1.0).check_simulated_folder(folder)
    (folder / "truth.json").unlink()  # the user's own cohort: nothing to compare
    RunParams(n_patients=60).check_simulated_folder(folder)
    with pytest.raises(ParameterError, match="'nonlinearity' must be a finite number >= 0"):
        RunParams.from_mapping({"nonlinearity": -0.5})
