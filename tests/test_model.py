"""The Latent Perturbation Model: shapes, the masking invariant, the loss terms, masks and configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lpmlib.model import (
    INPUTS,
    LatentPerturbationModel,
    LPMOutput,
    ModelConfig,
    count_parameters,
    dropout,
    lpm_loss,
    masking_patterns,
    sample_ptm_mask,
    training_patterns,
)

PTMS = {"a": 7, "b": 5, "c": 6}
TARGETS = {"rna": 8, "protein": 4, "met": 3}


def make_config(**overrides: object) -> ModelConfig:
    values = dict(
        n_drivers=5,
        n_grades=3,
        ptm_dims=PTMS,
        target_dims=TARGETS,
        target_parents={"protein": ["rna"]},
        latent_dim=16,
        vae_latent_dim=8,
        n_heads=4,
        recon_weights={"rna": 2.0, "b": 0.5},
    )
    values.update(overrides)
    return ModelConfig(**values)


def make_model(config: ModelConfig | None = None, read_out: bool = True) -> LatentPerturbationModel:
    """A model whose every path matters: random anchors, random residual read-outs, gates open and
    half-blended (`read_out=False`: as constructed, anchors and residuals at zero)."""
    torch.manual_seed(0)
    model = LatentPerturbationModel(config or make_config())
    if read_out:
        randomise_read_out(model)
    return model


def randomise_read_out(model: LatentPerturbationModel) -> None:
    with torch.no_grad():
        for k in range(len(model.anchor.patterns)):
            for name, dim in model.output_dims.items():
                model.anchor.set_map(
                    k, name, torch.randn(model.anchor.weight.shape[1], dim) * 0.1, torch.randn(dim)
                )
        for decoder in [*model.target_decoders.values(), *model.ptm_decoders.values()]:
            torch.nn.init.normal_(decoder[-1].weight, std=0.1)
    model.set_read_out(every_read_out(model, 1.0), every_read_out(model, 0.5))


def every_read_out(model: LatentPerturbationModel, value: float) -> dict[tuple[str, str], float]:
    return {(name, inputs): value for name in model.output_dims for inputs in INPUTS}


def make_batch(n: int = 10, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    gen = torch.Generator().manual_seed(seed)
    drivers = (torch.rand(n, 5, generator=gen) < 0.5).float()
    grade = torch.randint(0, 3, (n,), generator=gen)
    ptms = {name: torch.randn(n, dim, generator=gen) for name, dim in PTMS.items()}
    targets = {name: torch.randn(n, dim, generator=gen) for name, dim in TARGETS.items()}
    targets.update({name: x.clone() for name, x in ptms.items()})
    return drivers, grade, ptms, targets


def mask_rows(row: list[bool], n: int = 10) -> torch.Tensor:
    return torch.tensor(row, dtype=torch.bool).expand(n, -1).clone()


def output_tensors(out: LPMOutput) -> dict[str, torch.Tensor]:
    tensors = {f"pred_{k}": v for k, v in out.predictions.items()}
    tensors.update({f"mu_{k}": v for k, v in out.ptm_mu.items()})
    tensors.update({f"logvar_{k}": v for k, v in out.ptm_logvar.items()})
    tensors.update(
        z_state=out.z_state,
        z_seed=out.z_seed,
        joint_mu=out.joint_mu,
        joint_logvar=out.joint_logvar,
        attention=out.attention,
    )
    return tensors


def test_output_shapes() -> None:
    config = make_config()
    drivers, grade, ptms, _ = make_batch()
    out = make_model(config)(drivers, grade, ptms, mask_rows([True, False, True]))
    assert {k: tuple(v.shape) for k, v in out.predictions.items()} == {
        k: (10, d) for k, d in {**TARGETS, **PTMS}.items()
    }
    assert out.z_state.shape == out.z_seed.shape == (10, 16)
    assert out.joint_mu.shape == out.joint_logvar.shape == (10, 8)
    assert all(out.ptm_mu[k].shape == out.ptm_logvar[k].shape == (10, 8) for k in PTMS)
    assert out.attention.shape == (10, 6, 6)


MASKED_ROWS = pytest.mark.parametrize(
    "row", [[True, False, True], [False, False, False]], ids=["without_b", "genomics_only"]
)


@MASKED_ROWS
def test_masked_layers_receive_no_gradient(row: list[bool]) -> None:
    config = make_config()
    model = make_model(config).train()
    drivers, grade, ptms, targets = make_batch()
    mask = mask_rows(row)
    for x in ptms.values():
        x.requires_grad_(True)
    out = model(drivers, grade, ptms, mask)
    total = sum(t.sum() for t in output_tensors(out).values()) + lpm_loss(out, targets, mask, config)["total"]
    total.backward()
    for i, name in enumerate(PTMS):
        grad = ptms[name].grad
        if row[i]:
            assert grad is not None and grad.abs().sum() > 0, name
        else:
            assert grad is None or torch.count_nonzero(grad) == 0, name


@MASKED_ROWS
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_masked_values_change_no_output(row: list[bool], training: bool) -> None:
    model = make_model().train(training)
    drivers, grade, ptms, _ = make_batch()
    mask = mask_rows(row)
    changed = {
        name: x if row[i] else torch.full_like(x, float("nan")) if i % 2 else 100 * torch.randn_like(x)
        for i, (name, x) in enumerate(ptms.items())
    }
    torch.manual_seed(5)
    first = output_tensors(model(drivers, grade, ptms, mask))
    torch.manual_seed(5)
    second = output_tensors(model(drivers, grade, changed, mask))
    assert [k for k in first if not torch.equal(first[k], second[k])] == []


def test_dropout_zeroes_a_fraction_p_scales_the_rest_and_passes_gradients_through_its_mask() -> None:
    x = (torch.rand(200_000) + 1).requires_grad_()
    torch.manual_seed(3)
    out = dropout(x, 0.1, training=True)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.1, training=True), out)
    dropped = out == 0
    assert abs(dropped.double().mean().item() - 0.1) < 0.004  # 6 binomial standard deviations
    torch.testing.assert_close(out[~dropped], x[~dropped] / 0.9)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(dropped, 0.0, 1 / 0.9))
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0, training=True) is x


def test_observed_layer_values_change_outputs() -> None:
    model = make_model().eval()
    drivers, grade, ptms, _ = make_batch()
    mask = mask_rows([True, True, True])
    first = model(drivers, grade, ptms, mask)
    second = model(drivers, grade, {**ptms, "b": ptms["b"] + 1.0}, mask)
    assert not torch.allclose(first.z_state, second.z_state)
    assert not torch.allclose(first.predictions["rna"], second.predictions["rna"])


def _kl_numpy(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL per latent dimension: the sum over dimensions divided by their number."""
    return -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=1) / mu.shape[1]


def _info_nce_numpy(a: np.ndarray, b: np.ndarray, temperature: float) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = a @ b.T / temperature

    def diagonal_cross_entropy(m: np.ndarray) -> float:
        log_softmax = m - m.max(axis=1, keepdims=True)
        log_softmax = log_softmax - np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
        return float(-np.mean(np.diag(log_softmax)))

    return 0.5 * (diagonal_cross_entropy(logits) + diagonal_cross_entropy(logits.T))


def test_loss_terms_match_hand_computation() -> None:
    config = make_config(beta_kl=0.3, contrastive_weight=0.7, temperature=0.5)
    model = make_model(config).eval()
    drivers, grade, ptms, targets = make_batch(n=4)
    mask = torch.tensor(
        [[True, False, True], [False, False, False], [True, True, True], [False, True, False]]
    )
    out = model(drivers, grade, ptms, mask)
    loss = lpm_loss(out, targets, mask, config)
    to_np = lambda t: t.detach().double().numpy()  # noqa: E731

    anchored = {
        name: to_np(out.paths["anchor"][name]) + to_np(out.paths["residual"][name]) for name in targets
    }
    mse = {name: float(np.mean((anchored[name] - to_np(targets[name])) ** 2)) for name in targets}
    direct = {
        name: float(np.mean((to_np(out.paths["direct"][name]) - to_np(targets[name])) ** 2))
        for name in targets
    }
    reconstruction = sum(config.recon_weights.get(name, 1.0) * (mse[name] + direct[name]) for name in targets)
    per_ptm = np.stack([_kl_numpy(to_np(out.ptm_mu[n]), to_np(out.ptm_logvar[n])) for n in PTMS], axis=1)
    observed = mask.numpy()
    kl = 0.3 * (
        per_ptm[observed].sum() / observed.sum()
        + _kl_numpy(to_np(out.joint_mu), to_np(out.joint_logvar)).mean()
    )
    contrastive = 0.7 * _info_nce_numpy(to_np(out.z_seed), to_np(out.z_state), 0.5)

    expected = {
        "reconstruction": reconstruction,
        "kl": kl,
        "contrastive": contrastive,
        "total": reconstruction + kl + contrastive,
        **{f"recon_{k}": v for k, v in mse.items()},
        **{f"direct_{k}": v for k, v in direct.items()},
    }
    assert set(loss) == set(expected)
    for key, value in expected.items():
        assert loss[key].dim() == 0
        expected_value = torch.tensor(value, dtype=torch.float64)
        assert torch.allclose(loss[key].double(), expected_value, rtol=1e-5, atol=1e-6), key
    assert loss["recon_b"] > 0 and kl > 0 and contrastive > 0


def test_eval_is_deterministic_and_training_samples() -> None:
    model = make_model()
    drivers, grade, ptms, _ = make_batch()
    mask = mask_rows([True, True, False])
    model.eval()
    first = output_tensors(model(drivers, grade, ptms, mask))
    second = output_tensors(model(drivers, grade, ptms, mask))
    assert all(torch.equal(first[k], second[k]) for k in first)
    model.train()
    first, second = model(drivers, grade, ptms, mask), model(drivers, grade, ptms, mask)
    assert not torch.allclose(first.z_state, second.z_state)


def test_each_driver_is_a_token_that_matters() -> None:
    model = make_model().eval()
    drivers, grade, ptms, _ = make_batch()
    mask = mask_rows([True, True, True])
    drivers.requires_grad_(True)
    out = model(drivers, grade, ptms, mask)
    assert out.attention.shape == (10, 6, 6)
    assert torch.allclose(out.attention.sum(dim=-1), torch.ones(10, 6), atol=1e-5)
    (out.z_state.sum() + sum(p.sum() for p in out.predictions.values())).backward()
    assert (drivers.grad.abs().sum(dim=0) > 0).all()
    for j in range(5):
        flipped = drivers.detach().clone()
        flipped[:, j] = 1.0 - flipped[:, j]
        changed = model(flipped, grade, ptms, mask)
        assert not torch.allclose(changed.predictions["protein"], out.predictions["protein"]), j
        assert not torch.allclose(changed.attention, out.attention), j


@pytest.mark.parametrize("binary", [True, False])
def test_genomic_attention_is_multihead_attention_over_each_patient_s_tokens(binary: bool) -> None:
    """The encoder computes attention from its tables; it must equal torch's own over explicit tokens
    (each driver's embedding times its value, then the grade's), biases included."""
    genomics = make_model(make_config(n_grades=4)).genomics.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in genomics.parameters():
            parameter.normal_(std=0.5)
    drivers = torch.rand(12, 5)
    drivers = (drivers < 0.5).float() if binary else drivers
    grade = torch.arange(12) % 4
    tokens = torch.cat(
        [drivers.unsqueeze(-1) * genomics.driver_embedding, genomics.grade_embedding(grade)[:, None]], 1
    )
    attended, expected_weights = genomics.attention(tokens, tokens, tokens)
    embedded, weights = genomics(drivers, grade)
    assert torch.allclose(embedded, genomics.norm(tokens + attended).mean(dim=1), atol=1e-5)
    assert torch.allclose(weights, expected_weights, atol=1e-6)
    assert [x.shape for x in genomics(drivers[:0], grade[:0])] == [(0, 16), (0, 6, 6)]  # no patients


@pytest.mark.parametrize("latent_dim", [16, 128])
def test_grade_and_driver_tokens_start_on_one_scale(latent_dim: int) -> None:
    """A grade token far larger than the driver tokens would drown the drivers' effects."""
    genomics = make_model(make_config(latent_dim=latent_dim, n_drivers=40, n_grades=5)).genomics
    driver_norm = genomics.driver_embedding.norm(dim=1).mean().item()
    grade_norm = genomics.grade_embedding.weight.norm(dim=1).mean().item()
    assert 0.7 < grade_norm / driver_norm < 1.4, (grade_norm, driver_norm)


def test_protein_is_decoded_from_the_rna_anchor_and_the_direct_rna() -> None:
    model = make_model().eval()
    drivers, grade, ptms, _ = make_batch()
    mask = mask_rows([True, True, True])
    before = model(drivers, grade, ptms, mask)
    with torch.no_grad():
        model.anchor.bias[:, model.anchor.output_columns["rna"].start] += 1.0
    after = model(drivers, grade, ptms, mask)
    assert not torch.allclose(before.paths["residual"]["protein"], after.paths["residual"]["protein"])
    assert torch.equal(before.paths["direct"]["protein"], after.paths["direct"]["protein"])
    with torch.no_grad():
        model.direct_target_decoders["rna"][-1].bias += 1.0
    direct = model(drivers, grade, ptms, mask)
    assert not torch.allclose(direct.paths["direct"]["protein"], after.paths["direct"]["protein"])
    assert torch.equal(direct.paths["residual"]["protein"], after.paths["residual"]["protein"])
    assert torch.equal(before.predictions["met"], after.predictions["met"])


def test_passes_under_several_masks_equal_one_pass_per_mask() -> None:
    """`under_masks` computes the genomic embedding once for every mask: nothing else may change."""
    model = make_model().eval()
    drivers, grade, ptms, _ = make_batch()
    masks = {"per row": mask_rows([True, False, True]), **masking_patterns(list(PTMS))}
    for name, together in model.under_masks(drivers, grade, ptms, masks):
        alone = model(drivers, grade, ptms, masks[name].expand(10, -1))
        for key, value in output_tensors(alone).items():
            assert torch.equal(output_tensors(together)[key], value), (name, key)
    assert [name for name, _ in model.under_masks(drivers, grade, ptms, masks)] == list(masks)


def test_a_new_model_is_its_anchor_and_gate_zero_gives_exactly_the_anchor() -> None:
    fresh = make_model(read_out=False).eval()
    drivers, grade, ptms, _ = make_batch()
    mask = mask_rows([True, False, True])
    out = fresh(drivers, grade, ptms, mask)
    assert all(torch.count_nonzero(r) == 0 for r in out.paths["residual"].values())  # zero-initialised
    model = make_model().eval()
    model.set_read_out(every_read_out(model, 0.0), every_read_out(model, 0.0))
    out = model(drivers, grade, ptms, mask)
    assert all(torch.equal(out.predictions[n], out.paths["anchor"][n]) for n in model.output_dims)
    assert any(torch.count_nonzero(r) > 0 for r in out.paths["residual"].values())
    model.set_read_out({("rna", "all"): 0.5}, {("met", "all"): 1.0})
    out = model(drivers, grade, ptms, mask)
    assert torch.allclose(
        out.predictions["rna"], out.paths["anchor"]["rna"] + 0.5 * out.paths["residual"]["rna"]
    )
    assert torch.equal(out.predictions["met"], out.paths["direct"]["met"])
    assert model.read_out()["rna", "all"] == (0.5, 0.0) and model.read_out()["met", "all"] == (0.0, 1.0)
    assert model.read_out()["rna", "genomics_only"] == (0.0, 0.0)


def test_genomics_only_rows_take_the_genomics_only_read_out() -> None:
    """A row that shows a layer no other PTM layer is read out with that layer's genomics-only choice."""
    model = make_model().eval()
    model.set_read_out(every_read_out(model, 0.0), every_read_out(model, 0.0))
    model.set_read_out({("rna", "genomics_only"): 1.0, ("a", "genomics_only"): 1.0}, {})
    drivers, grade, ptms, _ = make_batch(n=3)
    mask = torch.tensor([[False, False, False], [True, False, False], [False, True, False]])  # a only; b only
    out = model(drivers, grade, ptms, mask)
    with_residual = {n: out.paths["anchor"][n] + out.paths["residual"][n] for n in ("rna", "a")}
    assert torch.allclose(out.predictions["rna"][0], with_residual["rna"][0])  # genomics only
    assert torch.equal(out.predictions["rna"][1:], out.paths["anchor"]["rna"][1:])  # a or b visible
    assert torch.allclose(out.predictions["a"][:2], with_residual["a"][:2])  # a sees no other PTM layer
    assert torch.equal(out.predictions["a"][2], out.paths["anchor"]["a"][2])  # a sees b


def test_an_anchor_never_reads_its_own_layer_or_a_masked_one() -> None:
    model = make_model()
    patterns = model.anchor.patterns.tolist()
    for k, pattern in enumerate(patterns):
        for name in model.output_dims:
            weight = model.anchor.weight_of(name)[k]
            for i, (ptm, rows) in enumerate(model.anchor.input_rows.items()):
                hidden = ptm == name or not pattern[i]
                assert (torch.count_nonzero(weight[rows.start : rows.stop]) == 0) == hidden, (k, name, ptm)


def test_a_pattern_without_an_anchor_is_an_error_naming_it() -> None:
    dims = {"a": 3, "b": 2, "c": 2, "d": 2, "e": 2}  # two of five observed: not a training pattern
    model = make_model(make_config(ptm_dims=dims))
    drivers, grade, _, _ = make_batch()
    ptms = {name: torch.randn(10, dim) for name, dim in dims.items()}
    with pytest.raises(ValueError, match=r"masking pattern \[1, 1, 0, 0, 0\] has no fitted anchor"):
        model(drivers, grade, ptms, mask_rows([True, True, False, False, False]))


def test_initialisation_is_deterministic() -> None:
    first, second = make_model().state_dict(), make_model().state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_sample_ptm_mask_is_seeded_and_draws_the_five_kinds_equally() -> None:
    masks = [sample_ptm_mask(5000, 4, torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert masks[0].dtype == torch.bool and masks[0].shape == (5000, 4)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])
    kept = masks[0].sum(dim=1)
    fractions = {k: (kept == k).float().mean().item() for k in range(5)}
    assert all(0.17 < fractions[k] < 0.23 for k in range(5)), fractions  # genomics-only, keep-one, ... all


@pytest.mark.parametrize("n_ptm", [1, 2, 3, 5])
def test_training_patterns_hold_every_question_pattern_and_grow_quadratically(n_ptm: int) -> None:
    patterns, probabilities = training_patterns(n_ptm)
    rows = {tuple(row) for row in patterns.tolist()}
    assert len(rows) == len(patterns)
    named = masking_patterns([f"p{i}" for i in range(n_ptm)])
    assert {tuple(v.tolist()) for v in named.values()} <= rows
    assert len(patterns) <= 2**n_ptm
    if n_ptm >= 5:  # below five, some kinds coincide (dropping two of three keeps one)
        assert len(patterns) == 2 + 2 * n_ptm + n_ptm * (n_ptm - 1) // 2
    assert torch.isclose(probabilities.sum(), torch.tensor(1.0)) and (probabilities > 0).all()


def test_masking_patterns() -> None:
    patterns = masking_patterns(["pY", "acetyl", "methyl"])
    assert list(patterns) == [
        "all",
        "genomics_only",
        "without_pY",
        "without_acetyl",
        "without_methyl",
        "only_pY",
        "only_acetyl",
        "only_methyl",
    ]
    rows = {k: v.tolist() for k, v in patterns.items()}
    assert rows["all"] == [True] * 3 and rows["genomics_only"] == [False] * 3
    assert rows["without_acetyl"] == [True, False, True] and rows["only_methyl"] == [False, False, True]
    assert all(v.dtype == torch.bool for v in patterns.values())


def test_config_round_trip_through_json() -> None:
    config = make_config()
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config and list(restored.target_dims) == list(TARGETS)
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"latent_dim": 18}, r"latent_dim \(18\) must be divisible by n_heads \(4\)"),
        (
            {"target_parents": {"rna": ["protein"]}},
            "parent 'protein' of target 'rna' must be a target earlier",
        ),
        ({"target_parents": {"protein": ["a"]}}, "parent 'a' of target 'protein'"),
        ({"target_parents": {"dna": ["rna"]}}, "'dna', which is not a target layer"),
        ({"recon_weights": {"lipids": 1.0}}, "recon_weights names unknown layers"),
    ],
)
def test_invalid_config_is_an_error_naming_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_config(**overrides)


def test_count_parameters_covers_every_parameter() -> None:
    model = make_model()
    blocks = count_parameters(model)
    assert [name for name, _ in blocks] == [
        "genomics",
        "seed_head",
        "ptm_encoders",
        "joint_encoder",
        "fusion",
        "anchor",
        "target_decoders",
        "ptm_decoders",
        "direct_target_decoders",
        "direct_ptm_decoders",
    ]
    assert sum(n for _, n in blocks) == sum(p.numel() for p in model.parameters())
    assert all((n > 0) == (name != "anchor") for name, n in blocks)  # the anchor is fitted, not trained
