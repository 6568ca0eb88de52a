"""The counterfactual engine on a hand-built model whose every answer is known in advance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import RNA_DRIVER

from lpmlib.cohort import Cohort
from lpmlib.errors import UnknownDriverError
from lpmlib.perturb import Z_STATE, edit_drivers, edit_genome, predict_masked, ptm_mask


def held_out_genome(cohort: Cohort, fold) -> np.ndarray:
    return cohort.drivers.to_numpy(dtype=float)[fold.test_rows]


def test_only_the_rna_driver_moves_rna_and_by_exactly_its_vector(known) -> None:
    cohort, model, folds = known
    rna_name = cohort.driver_names[RNA_DRIVER]
    vector = model.rna_vector.double().numpy()
    n_carriers = 0
    for fold in folds:
        edits = edit_drivers(fold, "knockout")
        for name, edit in edits.items():
            rna_shift = edit.edited["rna"] - edit.baseline["rna"]
            expected = -np.tile(vector, (edit.n_carriers, 1)) if name == rna_name else 0.0
            assert np.array_equal(rna_shift, np.broadcast_to(expected, rna_shift.shape)), name
            assert np.all(edit.edited["metabolome"] - edit.baseline["metabolome"] == -1.0), name
        n_carriers += edits[rna_name].n_carriers
    assert n_carriers == cohort.driver(rna_name).sum() > 0


@pytest.mark.parametrize("kind", ["knockout", "only", "wild_type"])
def test_edits_give_the_expected_genomes_and_keep_the_grade(known, kind) -> None:
    cohort, _, folds = known
    for fold in folds:
        genome = held_out_genome(cohort, fold)
        grade = cohort.clinical["grade"].to_numpy()[fold.test_rows]
        for j, (name, edit) in enumerate(edit_drivers(fold, kind).items()):
            assert np.array_equal(edit.rows, np.flatnonzero(genome[:, j] == 1))
            assert np.array_equal(edit.baseline[Z_STATE], genome[edit.rows])
            expected = np.zeros_like(genome[edit.rows])
            if kind == "knockout":
                expected = genome[edit.rows].copy()
                expected[:, j] = 0
            elif kind == "only":
                expected[:, j] = 1
            assert np.array_equal(edit.edited[Z_STATE], expected), (kind, name)
            assert np.array_equal(edit.edited["protein"][:, 0], grade[edit.rows])


def test_the_edit_of_every_driver_is_one_forward_pass(known) -> None:
    cohort, model, folds = known
    model.calls = 0
    edits = edit_drivers(folds[0], "knockout")
    assert model.calls == 1 and len(edits) == len(cohort.driver_names)


def test_a_driver_without_carriers_gets_an_empty_edit(known) -> None:
    cohort, _, folds = known
    absent = [d for d in cohort.driver_names if cohort.driver(d).sum() == 0]
    assert absent, "the small simulated cohort has a driver without carriers"
    edit = edit_drivers(folds[0], "knockout", absent)[absent[0]]
    assert edit.n_carriers == 0 and edit.edited["rna"].shape == (0, cohort.layers["rna"].n_features)


def test_an_unknown_driver_is_an_error_listing_the_valid_names(known) -> None:
    cohort, _, folds = known
    with pytest.raises(UnknownDriverError, match="Valid drivers: ERG, ETV1, ETV4, FOXA1") as error:
        edit_drivers(folds[0], "knockout", ["FOXA1", "NOT_A_GENE"])
    assert "NOT_A_GENE" in str(error.value)


def test_edit_genome_rules_and_an_unknown_kind() -> None:
    genome = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32)
    assert edit_genome(genome, 1, "knockout").tolist() == [[1, 0, 0], [0, 0, 1]]
    assert edit_genome(genome, 1, "only").tolist() == [[0, 1, 0], [0, 1, 0]]
    assert edit_genome(genome, 1, "wild_type").tolist() == [[0, 0, 0], [0, 0, 0]]
    assert genome.tolist() == [[1, 1, 0], [0, 1, 1]]  # the input is left as it was
    with pytest.raises(ValueError, match="unknown edit kind"):
        edit_genome(genome, 1, "delete")  # type: ignore[arg-type]


def test_ptm_mask_hides_exactly_the_named_layers(known) -> None:
    cohort, _, folds = known
    names = cohort.ptm_names
    mask = ptm_mask(4, names, ["acetyl"])
    assert mask.shape == (4, len(names)) and mask.dtype == torch.bool
    assert mask.all(dim=0).tolist() == [name != "acetyl" for name in names]
    assert not ptm_mask(2, names).any()
    with pytest.raises(KeyError, match="unknown PTM layer"):
        ptm_mask(2, names, ["not_a_layer"])

    fold = folds[0]
    outputs = predict_masked(fold, ["acetyl"])
    for name in names:
        observed = cohort.layers[name].values.to_numpy()[fold.test_rows]
        expected = np.zeros_like(observed) if name == "acetyl" else observed
        assert np.allclose(outputs[name], expected, atol=1e-5), name
    genomics_only = predict_masked(fold)
    assert all(np.all(genomics_only[name] == 0) for name in names)
