"""The z-score + PCA projector shared by the simulator and real cohorts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lpmlib.preprocess import LayerProjector


def raw_matrix(n: int = 80, p: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    values = latent @ rng.normal(size=(3, p)) * rng.uniform(1, 20, size=p) + rng.normal(
        scale=0.1, size=(n, p)
    )
    return pd.DataFrame(values, index=[f"P{i}" for i in range(n)], columns=[f"G{j}" for j in range(p)])


def test_scores_reconstruct_the_z_scored_features_through_the_loadings() -> None:
    raw = raw_matrix()
    projector = LayerProjector(n_components=30)
    scores = projector.fit_transform(raw)
    z = (raw - raw.mean()) / raw.std(ddof=0)
    np.testing.assert_allclose(scores.to_numpy() @ projector.loadings.to_numpy(), z.to_numpy(), atol=1e-8)
    assert list(scores.columns[:2]) == ["PC1", "PC2"] and scores.index.equals(raw.index)


def test_three_components_capture_a_three_factor_layer() -> None:
    projector = LayerProjector(n_components=5).fit(raw_matrix())
    assert projector.explained_variance_ratio[:3].sum() > 0.99


def test_fitted_on_some_patients_applied_to_others_without_refitting() -> None:
    raw = raw_matrix()
    projector = LayerProjector(n_components=4).fit(raw.iloc[:60])
    before = projector.loadings.copy()
    held_out = projector.transform(raw.iloc[60:])
    assert held_out.shape == (20, 4)
    pd.testing.assert_frame_equal(projector.loadings, before)


def test_components_are_capped_by_patients_and_features() -> None:
    assert LayerProjector(50).fit(raw_matrix(n=20, p=30)).loadings.shape == (20, 30)
    assert LayerProjector(50).fit(raw_matrix(n=80, p=10)).loadings.shape == (10, 10)


def test_transform_refuses_other_features() -> None:
    projector = LayerProjector(3).fit(raw_matrix())
    with pytest.raises(ValueError, match="same features"):
        projector.transform(raw_matrix().iloc[:, ::-1])
