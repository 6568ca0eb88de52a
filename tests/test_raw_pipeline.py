"""The raw-matrix pipeline: every statistic fitted on training patients, applied to held-out ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lpmlib.preprocess import PipelineSettings, RawLayerPipeline

NO_PURITY = {"regress_purity": False}


def cohort(n: int = 80, p: int = 40, seed: int = 0, missing: float = 0.05) -> tuple[pd.DataFrame, pd.Series]:
    """A three-factor layer with a purity effect on some features and values missing at random."""
    rng = np.random.default_rng(seed)
    purity = rng.uniform(0.2, 0.9, size=n)
    values = rng.normal(size=(n, 3)) @ rng.normal(size=(3, p)) * rng.uniform(0.5, 3, size=p)
    values += np.outer(purity, rng.normal(scale=2, size=p)) + rng.normal(scale=0.3, size=(n, p))
    values[rng.random((n, p)) < missing] = np.nan
    patients = [f"P{i}" for i in range(n)]
    raw = pd.DataFrame(values, index=patients, columns=[f"G{j}" for j in range(p)])
    return raw, pd.Series(purity, index=patients, name="purity")


def z_score(frame: pd.DataFrame) -> pd.DataFrame:
    return (frame - frame.mean()) / frame.std(ddof=0)


def test_held_out_patients_do_not_reach_the_fit() -> None:
    raw, purity = cohort()
    train, held = raw.index[:60], raw.index[60:]
    settings = PipelineSettings(top_variance=20, n_components=5)
    rng = np.random.default_rng(1)
    changed, changed_purity = raw.copy(), purity.copy()
    changed.loc[held] = rng.normal(50, 30, size=(len(held), raw.shape[1]))
    changed.iloc[60:, :10] = np.nan
    changed_purity.loc[held] = np.nan
    # the whole cohort's purity is handed to fit on purpose: only training patients may be read from it
    first = RawLayerPipeline(settings).fit(raw.loc[train], purity)
    second = RawLayerPipeline(settings).fit(changed.loc[train], changed_purity)
    pd.testing.assert_frame_equal(
        first.transform(raw.loc[train], purity),
        second.transform(changed.loc[train], changed_purity),
        check_exact=True,
    )
    pd.testing.assert_frame_equal(first.loadings, second.loadings, check_exact=True)
    assert first.selected_features == second.selected_features


def test_held_out_transform_uses_fitted_statistics_only() -> None:
    raw, purity = cohort()
    train, held = raw.index[:60], raw.index[60:]
    pipeline = RawLayerPipeline(PipelineSettings(top_variance=20, n_components=5)).fit(raw.loc[train], purity)
    batch = pipeline.transform(raw.loc[held], purity)
    for patient in held:
        single = pipeline.transform(raw.loc[[patient]], purity)
        np.testing.assert_allclose(single.to_numpy(), batch.loc[[patient]].to_numpy(), rtol=0, atol=1e-12)
    others_changed = raw.loc[held].copy()
    others_changed.iloc[1:] = 1e3
    np.testing.assert_allclose(pipeline.transform(others_changed, purity).iloc[0], batch.iloc[0], atol=1e-12)
    pd.testing.assert_frame_equal(pipeline.transform(raw.loc[held], purity), batch, check_exact=True)


def test_missingness_filter_counts_training_patients_only() -> None:
    raw, _ = cohort(n=40, p=6, missing=0.0)
    train, held = raw.index[:30], raw.index[30:]
    raw.loc[train[:16], "G0"] = np.nan  # 16/30 > 0.5: dropped
    raw.loc[train[:15], "G1"] = np.nan  # 15/30 = 0.5: kept (the threshold is "more than")
    raw.loc[held, "G2"] = np.nan  # missing only in held-out patients: kept
    pipeline = RawLayerPipeline(PipelineSettings(n_components=None, **NO_PURITY)).fit(raw.loc[train])
    assert pipeline.selected_features == ["G1", "G2", "G3", "G4", "G5"]
    report = pipeline.report()
    assert (report["n_features_in"], report["n_dropped_missing"], report["n_kept_top_variance"]) == (6, 1, 5)
    assert pipeline.transform(raw.loc[held]).notna().all().all()


def test_missing_values_are_imputed_by_the_training_median() -> None:
    raw, _ = cohort(n=40, p=4, missing=0.0)
    train, held = raw.index[:31], raw.index[31:]
    raw.loc[train[:6], "G0"] = np.nan
    raw.loc[held[0], "G0"] = np.nan
    raw.loc[held[1:], "G0"] = 1e6  # extreme held-out values must not move the median
    pipeline = RawLayerPipeline(PipelineSettings(n_components=None, **NO_PURITY)).fit(raw.loc[train])
    median = raw.loc[train, "G0"].median()
    filled = raw.loc[train, "G0"].fillna(median)
    expected = (median - filled.mean()) / filled.std(ddof=0)
    assert pipeline.medians_["G0"] == median
    assert pipeline.transform(raw.loc[held]).loc[held[0], "G0"] == pytest.approx(expected, abs=1e-12)


def purity_cohort(n: int = 100, seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    """`affected` carries 5 * purity; `clean` is exactly uncorrelated with purity."""
    rng = np.random.default_rng(seed)
    purity = pd.Series(rng.uniform(0.2, 0.9, size=n), index=[f"P{i}" for i in range(n)])
    centred = purity - purity.mean()
    noise = rng.normal(size=n)
    clean = noise - centred * (centred @ noise) / (centred @ centred)
    raw = pd.DataFrame(
        {"affected": 5 * purity + rng.normal(scale=0.5, size=n), "clean": clean, "other": rng.normal(size=n)},
        index=purity.index,
    )
    return raw, purity


def test_purity_regression_removes_a_planted_linear_effect() -> None:
    raw, purity = purity_cohort()
    pipeline = RawLayerPipeline(PipelineSettings(n_components=None))
    out = pipeline.fit_transform(raw, purity)
    assert abs(np.corrcoef(out["affected"], purity)[0, 1]) < 1e-10
    assert pipeline.purity_slopes_["affected"] == pytest.approx(5, abs=0.5)
    np.testing.assert_allclose(out["clean"], z_score(raw)["clean"], atol=1e-10)
    untouched = RawLayerPipeline(PipelineSettings(n_components=None, **NO_PURITY)).fit_transform(raw, purity)
    assert np.corrcoef(untouched["affected"], purity)[0, 1] > 0.9


def test_unknown_purity_is_imputed_by_the_training_median() -> None:
    raw, purity = purity_cohort()
    pipeline = RawLayerPipeline(PipelineSettings(n_components=None)).fit(raw.iloc[:80], purity)
    unknown = purity.copy()
    unknown.iloc[80:] = np.nan
    at_median = purity.copy()
    at_median.iloc[80:] = purity.iloc[:80].median()
    pd.testing.assert_frame_equal(
        pipeline.transform(raw.iloc[80:], unknown), pipeline.transform(raw.iloc[80:], at_median)
    )
    with pytest.raises(ValueError, match="needs purity"):
        pipeline.transform(raw.iloc[80:])


def test_top_variance_keeps_the_planted_high_variance_features() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(50, 30))
    planted = [2, 9, 13, 21, 28]
    values[:, planted] *= 10
    raw = pd.DataFrame(values, columns=[f"G{j}" for j in range(30)])
    pipeline = RawLayerPipeline(PipelineSettings(top_variance=5, n_components=None, **NO_PURITY)).fit(raw)
    assert pipeline.selected_features == [f"G{j}" for j in planted]
    assert pipeline.report()["n_kept_top_variance"] == 5


def test_without_pca_the_z_scored_selected_features_keep_their_names() -> None:
    raw, _ = cohort(missing=0.0)
    settings = PipelineSettings(top_variance=10, n_components=None, **NO_PURITY)
    pipeline = RawLayerPipeline(settings)
    out = pipeline.fit_transform(raw)
    assert list(out.columns) == pipeline.selected_features and len(out.columns) == 10
    pd.testing.assert_frame_equal(out, z_score(raw[pipeline.selected_features]), atol=1e-12)
    names = pipeline.selected_features
    pd.testing.assert_frame_equal(pipeline.loadings, pd.DataFrame(np.eye(10), index=names, columns=names))
    assert pipeline.report()["n_components"] is None


def test_model_ready_values_pass_unchanged_whatever_the_purity_and_other_settings() -> None:
    raw, purity = cohort(missing=0.0)
    pipeline = RawLayerPipeline(PipelineSettings(model_ready=True, top_variance=5, log_transform=True))
    out = pipeline.fit(raw.iloc[:40], purity).transform(raw, purity)
    pd.testing.assert_frame_equal(out, raw, check_exact=True)
    assert not pipeline.projected and pipeline.selected_features == list(raw.columns)
    with_gap = raw.copy()
    with_gap.iloc[3, 2] = np.nan
    with pytest.raises(ValueError, match="model-ready layer has a missing value .sample 'P3', column 'G2'"):
        RawLayerPipeline(PipelineSettings(model_ready=True)).fit(with_gap)


def test_a_feature_left_out_is_named_with_the_reason_and_its_missing_fraction() -> None:
    raw, _ = cohort(missing=0.0)
    raw.loc[raw.index[:60], "G0"] = np.nan  # missing in 60 of 80 training patients
    pipeline = RawLayerPipeline(PipelineSettings(top_variance=10, **NO_PURITY)).fit(raw)
    assert pipeline.why_not_selected("G0") == (
        "dropped by the missingness filter: missing in 75% of the fold's training patients (limit 50%)"
    )
    left_out = next(f for f in raw.columns[1:] if f not in pipeline.selected_features)
    assert "not among the 10 most variable features" in pipeline.why_not_selected(left_out)
    prepared = pipeline.prepare(raw)
    assert list(prepared.columns) == pipeline.selected_features
    pd.testing.assert_frame_equal(pipeline.project(prepared), pipeline.transform(raw))


def test_with_all_components_scores_times_loadings_reconstruct_the_z_scores() -> None:
    raw, purity = cohort(n=40, p=15)
    pipeline = RawLayerPipeline(PipelineSettings(top_variance=15, n_components=15))
    scores = pipeline.fit_transform(raw, purity)
    z = RawLayerPipeline(PipelineSettings(top_variance=15, n_components=None)).fit_transform(raw, purity)
    assert list(scores.columns) == [f"PC{i}" for i in range(1, 16)]
    assert list(pipeline.loadings.columns) == pipeline.selected_features
    np.testing.assert_allclose(scores.to_numpy() @ pipeline.loadings.to_numpy(), z.to_numpy(), atol=1e-8)


def test_components_are_capped_by_the_selected_features() -> None:
    raw, _ = cohort(n=40, p=15, missing=0.0)
    pipeline = RawLayerPipeline(PipelineSettings(top_variance=8, n_components=50, **NO_PURITY)).fit(raw)
    assert pipeline.loadings.shape == (8, 8) and pipeline.report()["n_components"] == 8


def test_log_transform_applies_log2_of_x_plus_one() -> None:
    rng = np.random.default_rng(7)
    counts = pd.DataFrame(rng.poisson(50, size=(30, 5)).astype(float), columns=list("ABCDE"))
    settings = PipelineSettings(log_transform=True, n_components=None, **NO_PURITY)
    pipeline = RawLayerPipeline(settings)
    out = pipeline.fit_transform(counts)
    pd.testing.assert_frame_equal(out, z_score(np.log2(counts + 1)), atol=1e-12)
    # z-scores hide a constant factor (log vs log2): the fitted medians are on the log2(x + 1) scale
    pd.testing.assert_series_equal(pipeline.medians_, np.log2(counts + 1).median(), check_names=False)
    with pytest.raises(ValueError, match="> -1"):
        RawLayerPipeline(settings).fit(counts - 100)


def test_transform_reorders_columns_by_name_and_refuses_other_columns() -> None:
    raw, purity = cohort()
    pipeline = RawLayerPipeline(PipelineSettings(top_variance=20, n_components=5)).fit(raw.iloc[:60], purity)
    held = raw.iloc[60:]
    pd.testing.assert_frame_equal(
        pipeline.transform(held.iloc[:, ::-1], purity), pipeline.transform(held, purity), check_exact=True
    )
    with pytest.raises(ValueError, match="raw columns seen in fit"):
        pipeline.transform(held.drop(columns="G3"), purity)
    with pytest.raises(ValueError, match="no entry for"):
        pipeline.transform(held, purity.iloc[:70])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("log_transform", "yes"),
        ("max_missing_fraction", 1.5),
        ("max_missing_fraction", -0.1),
        ("max_missing_fraction", float("nan")),
        ("top_variance", 0),
        ("top_variance", 2.5),
        ("top_variance", True),
        ("n_components", 0),
        ("n_components", 3.0),
        ("regress_purity", 1),
        ("seed", -1),
    ],
)
def test_invalid_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"PipelineSettings field '{field}' must be "):
        PipelineSettings(**{field: value})
