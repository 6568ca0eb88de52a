"""The linear models the LPM nests and is compared with: ridge and reduced-rank ridge, on the inputs
the model sees.

Inputs are the drivers (0/1), the one-hot grade and the visible PTM layers scaled as the model sees
them (a fold's `LayerScaler`); a layer is never an input of its own prediction. Ridge is scikit-learn's
`RidgeCV` (alpha by efficient leave-one-out). Reduced-rank ridge keeps only the `rank` leading
directions of ridge's fitted values: every output feature is then read from one shared
low-dimensional linear state, which is what the LPM's z_state is meant to be. Its alpha and rank are
chosen together by K-fold cross-validation on the training patients, and plain ridge (full rank, ridge's
own alpha) is kept unless the best choice beats it clearly (`SEPARATION`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from lpmlib.cohort import N_GRADES, Cohort
from lpmlib.stats import clear_gain

RIDGE_ALPHAS = np.logspace(-2, 5, 15)
RANKS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # candidate ranks; full rank (plain ridge) is always a candidate
ALPHA_FACTORS = (1 / 16, 1 / 4, 1.0)  # reduced-rank ridge's alphas, relative to ridge's own
SEPARATION = 2.0  # standard errors by which a reduced-rank choice must beat plain ridge in the CV


def genomic_design(drivers: np.ndarray, grade: np.ndarray) -> np.ndarray:
    """Drivers and one-hot grade: the genomic inputs of every linear model and of the LPM's anchor."""
    return np.hstack([np.asarray(drivers, dtype=float), np.eye(N_GRADES)[np.asarray(grade, dtype=int)]])


def cohort_genomic_design(cohort: Cohort) -> np.ndarray:
    """`genomic_design` of every patient of a cohort."""
    return genomic_design(cohort.drivers.to_numpy(), cohort.clinical["grade"].to_numpy())


def design(genomics: np.ndarray, ptms: dict[str, np.ndarray], visible: list[str]) -> np.ndarray:
    """Genomic inputs followed by the visible PTM layers (already scaled as the model sees them)."""
    return np.hstack([genomics, *(ptms[name] for name in visible)])


@dataclass(frozen=True)
class LinearFit:
    """A fitted linear map y = x @ coef + intercept and how it was chosen."""

    coef: np.ndarray  # (n_inputs, n_outputs)
    intercept: np.ndarray  # (n_outputs,)
    alpha: float
    rank: int | None  # None: full rank (plain ridge)
    alpha_factor: float = 1.0  # alpha relative to ridge's own leave-one-out alpha

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept


def fit_ridge(x: np.ndarray, y: np.ndarray) -> LinearFit:
    """scikit-learn's RidgeCV over `RIDGE_ALPHAS`, one alpha for all outputs (its leave-one-out errors
    from an SVD of x: at 10,240 x 274, 40% faster than its default for more rows than columns)."""
    model = RidgeCV(alphas=RIDGE_ALPHAS, gcv_mode="svd").fit(x, y)
    return LinearFit(
        np.asarray(model.coef_, dtype=float).T.reshape(x.shape[1], -1),
        np.atleast_1d(model.intercept_).astype(float),
        float(model.alpha_),
        None,
    )


class Inputs:
    """A design matrix with the centred SVDs of its rows (all, or a cross-validation training fold),
    each computed once: the layers fitted on the same visible inputs share them."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=float)
        self._svds: dict[bytes, tuple[np.ndarray, ...]] = {}

    def centred_svd(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """(column means, U, s, V') of the rows (all rows when None), centred."""
        key = b"" if rows is None else np.asarray(rows).tobytes()
        if key not in self._svds:
            x = self.x if rows is None else self.x[rows]
            mean = x.mean(axis=0)
            self._svds[key] = (mean, *thin_svd(x - mean))
        return self._svds[key]


def thin_svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U, s, V' of `x` through the eigenvectors of its smaller Gram matrix (x'x or xx'), keeping the
    directions whose eigenvalues stand above the Gram's rounding (a centred design's null directions are
    dropped). Ridge coefficients equal those of LAPACK's SVD to 1e-12 at 10,240 x 274, in a third of its
    time, and to 3e-15 at 102 x 274 (a default fold), in less than half."""
    n_rows, n_columns = x.shape
    tall = n_rows > n_columns
    eigenvalues, vectors = np.linalg.eigh(x.T @ x if tall else x @ x.T)
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    kept = eigenvalues > eigenvalues[0] * max(x.shape) * np.finfo(float).eps  # above the Gram's rounding
    s, vectors = np.sqrt(eigenvalues[kept]), vectors[:, kept]
    if tall:
        return x @ vectors / s, s, vectors.T
    return vectors, s, vectors.T @ x / s[:, None]


def as_inputs(x: np.ndarray | Inputs) -> Inputs:
    return x if isinstance(x, Inputs) else Inputs(x)


def _centred_projection(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The outputs' means, and the centred outputs projected on the inputs' left singular vectors (U'y)."""
    y_mean = y.mean(axis=0)
    return y_mean, u.T @ (y - y_mean)


def _ridge_coef(s: np.ndarray, vt: np.ndarray, uty: np.ndarray, alpha: float) -> np.ndarray:
    return vt.T @ ((s / (s**2 + alpha))[:, None] * uty)


def _output_directions(s: np.ndarray, uty: np.ndarray, alpha: float) -> np.ndarray:
    """Right singular vectors of ridge's fitted values on its training inputs, (q, q) leading first."""
    fitted = (s**2 / (s**2 + alpha))[:, None] * uty  # U' (fitted values): same right singular vectors
    return np.linalg.eigh(fitted.T @ fitted)[1][:, ::-1]  # its Gram's eigenvectors, largest first


def candidate_ranks(n_outputs: int, n_samples: int) -> list[int | None]:
    """Ranks below the problem's own size, then None (full rank)."""
    return [r for r in RANKS if r < min(n_outputs, n_samples - 1)] + [None]


def fit_reduced_rank_ridge(
    x: np.ndarray | Inputs, y: np.ndarray, n_splits: int = 5, seed: int = 0, like: LinearFit | None = None
) -> LinearFit:
    """Reduced-rank ridge: alpha and rank chosen together by K-fold CV among the ranks of
    `candidate_ranks` and the alphas `ALPHA_FACTORS` times ridge's own leave-one-out alpha (rank
    reduction regularises too, so the best alpha is often smaller). `like`: take its alpha and rank
    instead of choosing them (a related problem's choice; one SVD instead of a cross-validation).

    The best choice replaces plain ridge only when its gain is positive in every CV fold and larger than
    `SEPARATION` standard errors of the per-patient gain: the best of 30 choices beats ridge in the CV by
    chance alone, and on weak signals (genomics only) such a choice loses to ridge on new patients.
    """
    inputs = as_inputs(x)
    if like is not None:
        return fit_fixed(inputs, y, like)
    x = inputs.x
    ridge_alpha = fit_ridge(x, y).alpha
    n_splits = min(n_splits, len(x))  # fewer patients than folds: leave one patient out at a time
    ranks = candidate_ranks(y.shape[1], len(x) - len(x) // n_splits)
    errors = np.zeros((len(ALPHA_FACTORS), len(ranks), len(x)))  # per choice and patient
    folds = np.zeros(len(x), dtype=int)
    for k, (train, test) in enumerate(KFold(n_splits, shuffle=True, random_state=seed).split(x)):
        folds[test] = k
        x_mean, u, s, vt = inputs.centred_svd(train)
        y_mean, uty = _centred_projection(u, y[train])
        for i, factor in enumerate(ALPHA_FACTORS):
            predicted = (x[test] - x_mean) @ _ridge_coef(s, vt, uty, ridge_alpha * factor)
            directions = _output_directions(s, uty, ridge_alpha * factor)
            scores = predicted @ directions
            for j, rank in enumerate(ranks):
                reduced = predicted if rank is None else scores[:, :rank] @ directions[:, :rank].T
                errors[i, j, test] = np.sum((reduced + y_mean - y[test]) ** 2, axis=1)
    ridge = (ALPHA_FACTORS.index(1.0), len(ranks) - 1)
    best = np.unravel_index(np.argmin(errors.sum(axis=2)), errors.shape[:2])
    i, j = best if _separated(errors[ridge] - errors[best], folds) else ridge
    choice = LinearFit(np.empty(0), np.empty(0), ridge_alpha * ALPHA_FACTORS[i], ranks[j], ALPHA_FACTORS[i])
    return fit_fixed(inputs, y, choice)


def _separated(gain: np.ndarray, folds: np.ndarray) -> bool:
    """A per-patient gain positive in every fold and above `SEPARATION` standard errors."""
    in_every_fold = all(gain[folds == k].sum() > 0 for k in np.unique(folds))
    return in_every_fold and clear_gain(gain, SEPARATION)


def fit_fixed(x: np.ndarray | Inputs, y: np.ndarray, like: LinearFit) -> LinearFit:
    """Ridge, or reduced-rank ridge, with the alpha and rank of `like`, in closed form."""
    x_mean, u, s, vt = as_inputs(x).centred_svd()
    y_mean, uty = _centred_projection(u, y)
    alpha, rank = like.alpha, like.rank
    coef = _ridge_coef(s, vt, uty, alpha)
    if rank is not None and rank < min(coef.shape):
        directions = _output_directions(s, uty, alpha)[:, :rank]
        coef = coef @ directions @ directions.T
    return LinearFit(coef, y_mean - x_mean @ coef, float(alpha), rank, like.alpha_factor)


class ReducedRankRidgeCV(RegressorMixin, BaseEstimator):
    """Reduced-rank ridge regression as a scikit-learn estimator (alpha and rank by K-fold CV)."""

    def __init__(self, n_splits: int = 5, random_state: int = 0) -> None:
        self.n_splits = n_splits
        self.random_state = random_state

    def fit(self, x: np.ndarray, y: np.ndarray) -> ReducedRankRidgeCV:
        y = np.asarray(y, dtype=float)
        self.fit_ = fit_reduced_rank_ridge(
            np.asarray(x, dtype=float), y.reshape(len(y), -1), self.n_splits, self.random_state
        )
        self.alpha_, self.rank_ = self.fit_.alpha, self.fit_.rank
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.fit_.predict(np.asarray(x, dtype=float))


# The anchors' estimators, called as (inputs, y, seed, like): `like` is a related problem's fit whose
# choices (rank, alpha factor) are reused instead of cross-validating again.
ESTIMATORS = {
    "ridge": lambda x, y, seed, like: fit_ridge(x.x, y) if like is None else fit_fixed(x, y, like),
    "reduced_rank_ridge": lambda x, y, seed, like: fit_reduced_rank_ridge(x, y, seed=seed, like=like),
}
