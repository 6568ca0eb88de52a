"""Raw omic matrices to model-ready layers: z-score, then PCA, with the loadings kept.

The projector is fitted on one set of patients and applied to others, so the same code serves the
simulator (fitted on the whole synthetic cohort) and real cohorts (fitted on each training fold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

DEFAULT_N_COMPONENTS = 50


def pc_names(n: int) -> list[str]:
    """Column names of principal-component scores: PC1, PC2, ..."""
    return [f"PC{i + 1}" for i in range(n)]


class LayerProjector:
    """Z-score every feature, then project onto the leading principal components.

    Parameters
    ----------
    n_components
        Number of components kept; capped at the number of patients and of features seen in `fit`.
    seed
        Random state handed to scikit-learn's PCA (the full SVD used here is deterministic anyway).
    """

    def __init__(self, n_components: int = DEFAULT_N_COMPONENTS, seed: int = 42) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.seed = seed

    def fit(self, raw: pd.DataFrame) -> LayerProjector:
        """Learn feature means, scales and components from `raw` (patients x features)."""
        n_keep = min(self.n_components, raw.shape[0], raw.shape[1])
        self.scaler_ = StandardScaler().fit(raw.to_numpy(dtype=float))
        scaled = self.scaler_.transform(raw.to_numpy(dtype=float))
        self.pca_ = PCA(n_components=n_keep, svd_solver="full", random_state=self.seed).fit(scaled)
        self.features_ = list(raw.columns)
        return self

    def transform(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Principal-component scores of `raw`, whose columns must be the fitted features."""
        if list(raw.columns) != self.features_:
            raise ValueError("transform needs the same features, in the same order, as fit")
        scores = self.pca_.transform(self.scaler_.transform(raw.to_numpy(dtype=float)))
        return pd.DataFrame(scores, index=raw.index, columns=pc_names(scores.shape[1]))

    def fit_transform(self, raw: pd.DataFrame) -> pd.DataFrame:
        return self.fit(raw).transform(raw)

    @property
    def loadings(self) -> pd.DataFrame:
        """Components x features: a PC-score change times this gives the change of z-scored features."""
        return pd.DataFrame(
            self.pca_.components_, index=pc_names(self.pca_.n_components_), columns=self.features_
        )

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        return self.pca_.explained_variance_ratio_
