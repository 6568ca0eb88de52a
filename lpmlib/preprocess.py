"""Raw omic matrices to model-ready layers: z-score, then PCA, with the loadings kept.

The projector is fitted on one set of patients and applied to others, so the same code serves the
simulator (fitted on the whole synthetic cohort) and real cohorts (fitted on each training fold).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from lpmlib.constraints import Constraints, Flag, Interval, Options, check_fields

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


@dataclass(frozen=True)
class PipelineSettings:
    """Settings of `RawLayerPipeline`; every value is checked when the settings are made.

    log_transform: log2(x + 1) first (counts, intensities); CPTAC ratios are already log2.
    max_missing_fraction: drop features missing in more than this fraction of training patients.
    top_variance: keep this many features of highest training variance (after imputation and purity).
    n_components: PCA components; None models the selected features directly, z-scored.
    regress_purity: remove a linear purity effect per feature, fitted on training patients.
    seed: random state handed to the PCA.
    model_ready: the values are model-ready already (PC scores, or features scaled by their own
        pipeline): they are used unchanged, no step is fitted, and a missing value is an error.
    """

    log_transform: bool = False
    max_missing_fraction: float = 0.5
    top_variance: int = 5000
    n_components: int | None = DEFAULT_N_COMPONENTS
    regress_purity: bool = True
    seed: int = 42
    model_ready: bool = False

    CONSTRAINTS: ClassVar[Constraints] = {
        "log_transform": Flag(),
        "max_missing_fraction": Interval(float, 0, 1),
        "top_variance": Interval(int, 1),
        "n_components": (Interval(int, 1), Options((None,))),
        "regress_purity": Flag(),
        "seed": Interval(int, 0, 2**32, closed="left"),
        "model_ready": Flag(),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.CONSTRAINTS)


def _numeric(raw: pd.DataFrame, log_transform: bool) -> np.ndarray:
    """Patients x features as floats (NaN = missing), log2(x + 1)-transformed on request."""
    try:
        values = raw.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise ValueError(f"raw values must be numeric: {error}") from None
    if np.isinf(values).any():
        raise ValueError("raw values contain infinities; give missing values as NaN")
    if log_transform:
        if (values <= -1).any():
            raise ValueError("log_transform needs values > -1 (log2(x + 1)); found a value <= -1")
        values = np.log2(values + 1.0)
    return values


def _aligned_purity(purity: pd.Series, patients: pd.Index) -> np.ndarray:
    """Purity of `patients` (NaN = unknown); every patient needs an entry, so ID mismatches are caught."""
    if not isinstance(purity, pd.Series):
        raise ValueError(f"purity must be a pandas Series indexed by patient, got {type(purity).__name__}")
    if purity.index.has_duplicates:
        raise ValueError("purity has duplicated patients in its index")
    absent = patients.difference(purity.index)
    if len(absent):
        raise ValueError(
            f"purity has no entry for {len(absent)} patient(s), e.g. {list(absent[:3])}; "
            "give NaN for an unknown purity"
        )
    values = pd.to_numeric(purity, errors="raise").reindex(patients).to_numpy(dtype=float, na_value=np.nan)
    if np.isinf(values).any():
        raise ValueError("purity contains infinities")
    return values


class RawLayerPipeline:
    """A raw omic matrix (patients x features) to model-ready values, fitted on training patients only.

    Steps, every statistic fitted in `fit` and only applied in `transform`:

    1. optional log2(x + 1);
    2. drop features missing in more than `max_missing_fraction` of the training patients (and features
       never observed in training, which have no median);
    3. impute each missing value by the feature's training median. The median is simple, robust to
       outliers and needs no information from held-out patients; proteomic values are missing not at
       random (low abundance), so with ~100 patients fancier imputers are no more trustworthy;
    4. if purity is given and `regress_purity`, remove a linear purity effect per feature: least
       squares feature ~ a + b * purity on the training patients, and x - b * (purity - training mean
       purity) everywhere. Unknown purity (NaN) is imputed by the training median purity; the slope is
       fitted on the imputed values; constant training purity gives b = 0;
    5. keep the `top_variance` features of highest training variance (ties: earlier column first),
       in their original column order;
    6. `LayerProjector` (z-score + PCA, capped at patients/features), or with `n_components=None` a
       z-score by the training mean and SD (SD 0 -> 1).

    With `model_ready` every value is used unchanged (a missing one is an error).

    `transform` needs the raw columns seen in `fit`, as a set: they are reordered by name, and a
    missing or extra column is an error. Purity is a Series indexed by patient with an entry (possibly
    NaN) for every patient of `raw`; it may hold other patients too, whose values are ignored. Each
    patient is transformed with fitted statistics only, so results do not depend on the batch.
    """

    def __init__(self, settings: PipelineSettings = PipelineSettings()) -> None:
        if not isinstance(settings, PipelineSettings):
            raise ValueError(f"settings must be PipelineSettings, got {type(settings).__name__}")
        self.settings = settings

    def fit(self, raw: pd.DataFrame, purity: pd.Series | None = None) -> RawLayerPipeline:
        """Learn every statistic from `raw`, the training patients (and their `purity`)."""
        vars(self).pop("n_patients_fit_", None)  # unfitted until this fit completes
        self._check_frame(raw)
        if raw.shape[0] < 2 or raw.shape[1] < 1:
            raise ValueError(f"fit needs >= 2 patients and >= 1 feature, got shape {raw.shape}")
        values = _numeric(raw, self.settings.log_transform and not self.settings.model_ready)
        if self.settings.model_ready and np.isnan(values).any():
            row, column = np.argwhere(np.isnan(values))[0]
            raise ValueError(
                f"a model-ready layer has a missing value (sample '{raw.index[row]}', column "
                f"'{raw.columns[column]}'); impute it, or preprocess the raw values instead of model_ready"
            )
        self.features_in_ = list(raw.columns)
        self.missing_fraction_ = pd.Series(np.isnan(values).mean(axis=0), index=raw.columns)
        keep = (self.missing_fraction_ <= self.settings.max_missing_fraction).to_numpy()
        keep = keep & ~np.isnan(values).all(axis=0)
        self.n_after_missing_ = int(keep.sum())
        if self.n_after_missing_ == 0:
            raise ValueError("no feature passes the missingness filter on the training patients")
        values = values[:, keep]
        medians = np.nanmedian(values, axis=0)
        values = np.where(np.isnan(values), medians, values)
        values, slopes = self._fit_purity(values, raw.index, purity)
        chosen = self._top_variance(values)
        self.selected_features_ = list(raw.columns[keep][chosen])
        self.medians_ = pd.Series(medians[chosen], index=self.selected_features_)
        self.purity_slopes_ = pd.Series(slopes[chosen], index=self.selected_features_)
        self._fit_model(pd.DataFrame(values[:, chosen], index=raw.index, columns=self.selected_features_))
        self.n_patients_fit_ = raw.shape[0]
        return self

    def transform(self, raw: pd.DataFrame, purity: pd.Series | None = None) -> pd.DataFrame:
        """PC scores (PC1, ...) or, without PCA, the z-scored selected features, for any patients."""
        return self.project(self.prepare(raw, purity))

    def project(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model-ready values of prepared features (`prepare`): PC scores, z-scores or themselves."""
        if self.projector_ is not None:
            return self.projector_.transform(frame)
        if self.scaler_ is None:
            return frame
        z = self.scaler_.transform(frame.to_numpy())
        return pd.DataFrame(z, index=frame.index, columns=self.selected_features_)

    def fit_transform(self, raw: pd.DataFrame, purity: pd.Series | None = None) -> pd.DataFrame:
        return self.fit(raw, purity).transform(raw, purity)

    @property
    def loadings(self) -> pd.DataFrame:
        """Components x selected features; without PCA the identity (features x features)."""
        self._check_fitted()
        if self.projector_ is not None:
            return self.projector_.loadings
        names = self.selected_features_
        return pd.DataFrame(np.eye(len(names)), index=names, columns=names)

    @property
    def projected(self) -> bool:
        """Whether the values are principal-component scores (with loadings back to the features)."""
        self._check_fitted()
        return self.projector_ is not None

    @property
    def selected_features(self) -> list[str]:
        """Original names of the features that reach the z-score/PCA, in their raw column order."""
        self._check_fitted()
        return list(self.selected_features_)

    def report(self) -> dict:
        """Feature counts through the steps, and the components kept (None without PCA)."""
        self._check_fitted()
        n_in = len(self.features_in_)
        return {
            "n_patients_fit": self.n_patients_fit_,
            "n_features_in": n_in,
            "n_dropped_missing": n_in - self.n_after_missing_,
            "n_after_missing": self.n_after_missing_,
            "n_kept_top_variance": len(self.selected_features_),
            "purity_regressed": self.purity_used_,
            "n_components": None if self.projector_ is None else int(self.projector_.pca_.n_components_),
        }

    def _fit_purity(
        self, values: np.ndarray, patients: pd.Index, purity: pd.Series | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature least-squares purity slopes; returns the purity-adjusted values and the slopes."""
        self.purity_used_ = (
            self.settings.regress_purity and purity is not None and not self.settings.model_ready
        )
        slopes = np.zeros(values.shape[1])
        self.purity_mean_ = self.purity_median_ = None
        if not self.purity_used_:
            return values, slopes
        p = _aligned_purity(purity, patients)
        if np.isnan(p).all():
            raise ValueError("purity: no training patient has a purity value")
        self.purity_median_ = float(np.nanmedian(p))
        p = np.where(np.isnan(p), self.purity_median_, p)
        self.purity_mean_ = float(p.mean())
        centred = p - self.purity_mean_
        if np.ptp(p) > 0:
            slopes = centred @ (values - values.mean(axis=0)) / (centred @ centred)
        return values - np.outer(centred, slopes), slopes

    def _top_variance(self, values: np.ndarray) -> np.ndarray:
        """Column positions of the most variable features, in column order (ties: earlier first)."""
        if self.settings.model_ready:
            return np.arange(values.shape[1])
        order = np.argsort(-values.var(axis=0), kind="stable")
        return np.sort(order[: self.settings.top_variance])

    def _fit_model(self, frame: pd.DataFrame) -> None:
        """Z-score + PCA by `LayerProjector`, the z-score alone, or nothing for model-ready values."""
        n = None if self.settings.model_ready else self.settings.n_components
        self.projector_ = None if n is None else LayerProjector(n, self.settings.seed).fit(frame)
        scaled = n is None and not self.settings.model_ready
        self.scaler_ = StandardScaler().fit(frame.to_numpy()) if scaled else None

    def why_not_selected(self, feature: str) -> str:
        """Why a raw feature is not among the selected ones, with its missing fraction."""
        self._check_fitted()
        if feature not in self.missing_fraction_.index:
            return "not in the layer's file"
        missing, limit = self.missing_fraction_[feature], self.settings.max_missing_fraction
        if missing > limit or missing == 1:
            return (
                f"dropped by the missingness filter: missing in {missing:.0%} of the fold's training "
                f"patients (limit {limit:.0%})"
            )
        return (
            f"not among the {self.settings.top_variance} most variable features of the fold's training "
            f"patients (missing in {missing:.0%})"
        )

    def prepare(self, raw: pd.DataFrame, purity: pd.Series | None = None) -> pd.DataFrame:
        """Selected features of `raw`, log-transformed, imputed and purity-adjusted with fitted statistics:
        the values before z-score and projection, in the features' own units."""
        self._check_fitted()
        self._check_frame(raw)
        given, fitted = set(raw.columns), set(self.features_in_)
        if given != fitted or raw.shape[1] != len(self.features_in_):
            missing = [c for c in self.features_in_ if c not in given]
            extra = [c for c in raw.columns if c not in fitted]
            raise ValueError(
                f"transform needs the raw columns seen in fit; missing {missing[:5]} "
                f"({len(missing)}), unexpected {extra[:5]} ({len(extra)})"
            )
        values = _numeric(
            raw[self.selected_features_], self.settings.log_transform and not self.settings.model_ready
        )
        values = np.where(np.isnan(values), self.medians_.to_numpy(), values)
        if self.purity_used_:
            if purity is None:
                raise ValueError("the pipeline was fitted with purity; transform needs purity too")
            p = _aligned_purity(purity, raw.index)
            p = np.where(np.isnan(p), self.purity_median_, p)
            values = values - np.outer(p - self.purity_mean_, self.purity_slopes_.to_numpy())
        return pd.DataFrame(values, index=raw.index, columns=self.selected_features_)

    @staticmethod
    def _check_frame(raw: pd.DataFrame) -> None:
        if not isinstance(raw, pd.DataFrame):
            raise ValueError(f"raw must be a DataFrame (patients x features), got {type(raw).__name__}")
        if raw.columns.has_duplicates:
            raise ValueError("raw has duplicated feature names")

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_patients_fit_"):
            raise RuntimeError("RawLayerPipeline is not fitted: call fit first")
