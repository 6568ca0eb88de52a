"""A synthetic prostate-cancer multi-omic cohort with planted, recorded ground truth.

Drivers shift latent programmes, which flow nonlinearly through RNA -> protein -> five PTM layers ->
metabolome (`SimulationConfig.nonlinearity` sets how far from linear). Raw features of every layer mix
tumour signal with a stromal profile by purity and carry measurement noise; they are projected to PCs
by the same `LayerProjector` that real cohorts use.
Every patient-level random draw is kept, so the truth is recomputed, not assumed: noise ceilings, the
genomics-only ceiling, PTM dependencies and the counterfactual knockout of every driver (the same
patient with the same draws, one driver set to 0).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from lpmlib.cohort import CASE_ID, SEED_DRIVERS, SEED_PTMS, Cohort, Layer, parse_grade, write_seed_layout
from lpmlib.constraints import Constraints, Interval, Options, check_fields
from lpmlib.errors import ForeignTruthError
from lpmlib.preprocess import LayerProjector
from lpmlib.stats import mean_rms

KNOCKOUT_TRUTH_FILE = "truth_knockout.csv"
LAYER_TRUTH_FILE = "truth_layers.csv"
TARGETS = ("rna", "protein", "metabolome")
LAYERS = TARGETS + SEED_PTMS
ETS_FUSIONS = ("ERG", "ETV1", "ETV4")
# Marginal prevalences in primary prostate cancer (design choices; the conditionals are derived).
TARGET_PREVALENCE = {
    "ERG": 0.46,
    "ETV1": 0.08,
    "ETV4": 0.04,
    "FOXA1": 0.09,
    "SPOP": 0.11,
    "CDK12": 0.05,
    "BRAF": 0.02,
    "RAF1": 0.02,
    "FGFR2": 0.02,
    "SKIL": 0.03,
    "BRCA2": 0.05,
    "IDH1": 0.01,
    "MSI": 0.03,
    "CUL3": 0.02,
    "CHD1": 0.07,
    "MYC": 0.10,
    "PTEN": 0.20,
    "TP53": 0.12,
    "rare": 0.05,
}
# driver -> (partner, P(driver | partner)); P(driver | no partner) keeps the marginal on target.
ENRICHMENT = {"SPOP": ("ETS", 0.0), "CHD1": ("SPOP", 0.25), "PTEN": ("ERG", 0.30)}
ZERO_EFFECT_DRIVERS = ("SKIL", "IDH1", "CUL3", "RAF1", "FGFR2", "rare")
STRONG_DRIVERS = ("ERG", "PTEN", "TP53", "MYC", "FOXA1", "SPOP")
INTERACTION = ("ERG", "PTEN")
# With nonlinearity > 0, the 13 other pairs of strong drivers that can co-occur (not ERG x SPOP) interact too.
NONLINEAR_PAIRS = tuple(
    (a, b)
    for i, a in enumerate(STRONG_DRIVERS)
    for b in STRONG_DRIVERS[i + 1 :]
    if {a, b} != set(INTERACTION) and {a, b} != {"ERG", "SPOP"}
)
# Effect driver -> (its own gene, sign of the direct effect on that gene's RNA and protein).
OWN_GENE = {
    "ERG": ("ERG", 1),
    "ETV1": ("ETV1", 1),
    "ETV4": ("ETV4", 1),
    "FOXA1": ("FOXA1", 1),
    "SPOP": ("SPOP", -1),
    "CDK12": ("CDK12", -1),
    "BRAF": ("BRAF", 1),
    "BRCA2": ("BRCA2", -1),
    "MSI": ("MSH2", -1),
    "CHD1": ("CHD1", -1),
    "MYC": ("MYC", 1),
    "PTEN": ("PTEN", -1),
    "TP53": ("TP53", -1),
}
GENE_NAMES = tuple([g for g, _ in OWN_GENE.values()] + [d for d in ZERO_EFFECT_DRIVERS if d != "rare"])
AGGRESSIVENESS = {"TP53": 1.0, "MYC": 0.6, "PTEN": 0.6, "BRCA2": 0.6, "CDK12": 0.4}
GLEASON_CUTPOINTS = (-0.5, 0.9, 1.3, 2.3)  # latent aggressiveness -> Gleason 6, 7, 8, 9, 10
PTM_PARENTS = {
    "phospho": ["protein"],
    "acetyl": ["protein"],
    "ubiq": ["protein"],
    "pY": ["phospho"],
    "methyl": [],
}
RESIDUES = {"pY": "Y", "phospho": "ST", "acetyl": "K", "ubiq": "K", "methyl": "RK"}
PURITY_A, PURITY_B = 6, 3  # tumour purity ~ Beta(6, 3), mean 2/3
MC_CHUNK_ROWS = 50_000  # simulated patients held at once when averaging over Monte Carlo draws


@dataclass(frozen=True)
class SimulationConfig:
    """Every size, effect and noise level of the simulated cohort; the seed fixes all the rest."""

    n_patients: int = 160
    seed: int = 42
    n_components: int = 50  # PCs per layer (LayerProjector caps it at patients/features)
    leader: str = "acetyl"  # the PTM layer that carries most of the metabolome's information
    n_rna_features: int = 600
    n_protein_features: int = 400
    n_ptm_features: int = 300  # per PTM layer
    n_metabolome_features: int = 150
    programme_dim: int = 10  # latent biological programmes that drivers act on
    state_dim: int = 10  # latent state of RNA, protein, each PTM and the metabolome
    pY_state_dim: int = 5  # pY reads a few directions of the phospho state
    strong_effect: float = 1.0  # RMS programme shift of a strong driver (background-SD units)
    weak_effect: float = 0.5  # RMS programme shift of a weaker driver
    interaction_effect: float = 1.0  # RMS programme shift added only when ERG and PTEN co-occur
    grade_effect: float = 0.25  # RMS programme shift per Gleason point above 7
    own_gene_effect: float = 2.0  # direct shift of a driver's own gene, RNA and protein (raw units)
    private_sd: float = 0.3  # private biology of the RNA, protein, phospho, ubiq, metabolome states
    leader_private_sd: float = 1.0  # private part of the leader's state, which the metabolome inherits
    pY_private_sd: float = 0.1  # pY beyond what phospho explains
    leader_weight: float = 1.0  # gain of the leader's state on the metabolome
    follower_weight: float = 0.2  # gain of each other PTM state on the metabolome
    stroma_sd: float = 1.5  # spread of the fixed stromal profile over features (raw units)
    rna_noise_sd: float = 0.5  # measurement noise (raw units)
    protein_noise_sd: float = 0.6
    ptm_noise_sd: float = 0.5
    metabolome_noise_sd: float = 0.6
    unknown_grade_fraction: float = 0.05  # patients whose Gleason score is not reported
    monte_carlo_draws: int = 100  # draws per driver/grade profile for the genomics ceiling
    # How far from linear the flow is (0 = the original simulator; its files are byte-identical). With
    # nonlinearity = a: (1) every link tanh(x) becomes tanh((1 + a) * x), still bounded by 1 but a near-step
    # at a = 2-3, so each layer's expectation given its parent state saturates; (2) every pair of strong
    # drivers that can co-occur interacts, which is the only way a function of binary drivers can be
    # nonlinear: the ERG x PTEN shift grows to (1 + a) * interaction_effect, and each of NONLINEAR_PAIRS
    # adds, when both drivers are present, a shift of RMS a * interaction_effect in its own direction.
    nonlinearity: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, self.constraints())

    @classmethod
    def constraints(cls) -> Constraints:
        """Counts are integers at their minimum or above; every other number is finite and >= 0."""
        minimum = {
            "n_patients": 2,
            "seed": 0,
            "n_components": 1,
            "n_rna_features": len(GENE_NAMES),
            "n_protein_features": len(GENE_NAMES),
            "n_ptm_features": 1,
            "n_metabolome_features": 1,
            "programme_dim": 1,
            "state_dim": 1,
            "pY_state_dim": 1,
            "monte_carlo_draws": 1,
        }
        numbers = {
            f.name: Interval(float, 0) for f in fields(cls) if f.name not in minimum and f.name != "leader"
        }
        return {
            **{name: Interval(int, low) for name, low in minimum.items()},
            **numbers,
            "unknown_grade_fraction": Interval(float, 0, 1, closed="left"),
            "leader": Options(tuple(SEED_PTMS)),
        }

    def n_features(self, layer: str) -> int:
        named = {"rna": self.n_rna_features, "protein": self.n_protein_features}
        return named.get(layer, self.n_metabolome_features if layer == "metabolome" else self.n_ptm_features)

    def state_size(self, layer: str) -> int:
        return self.pY_state_dim if layer == "pY" else self.state_dim

    def private_sd_of(self, layer: str) -> float:
        """SD of a state's private part: large for the leader, the whole state for the independent methyl."""
        if layer == self.leader:
            return self.leader_private_sd
        return {"pY": self.pY_private_sd, "methyl": 1.0}.get(layer, self.private_sd)

    def noise_sd_of(self, layer: str) -> float:
        named = {"rna": self.rna_noise_sd, "protein": self.protein_noise_sd}
        return named.get(layer, self.metabolome_noise_sd if layer == "metabolome" else self.ptm_noise_sd)


@dataclass
class SimulatedCohort:
    """A simulated cohort (PC scores with loadings) and its recorded truth."""

    cohort: Cohort
    truth: dict
    knockout_effects: pd.DataFrame
    layer_truth: pd.DataFrame


@dataclass
class World:
    """The generative parameters shared by all patients (drawn from their own random stream)."""

    programme_weights: np.ndarray  # drivers x programmes; zero rows for the zero-effect drivers
    interaction: np.ndarray  # programme shift of the ERG x PTEN pair
    grade_direction: np.ndarray  # programme shift per Gleason point
    maps: dict[str, np.ndarray]  # parent state -> layer state
    metabolome_maps: dict[str, np.ndarray]  # PTM state -> metabolome state, scaled by its weight
    loadings: dict[str, np.ndarray]  # state -> raw features
    stroma: dict[str, np.ndarray]  # fixed stromal profile of each layer
    own_gene: dict[str, list[tuple[int, int, float]]]  # (driver, feature, shift) for RNA and protein
    features: dict[str, list[str]]
    pair_directions: np.ndarray  # NONLINEAR_PAIRS x programmes, RMS 1; used only when nonlinearity > 0


@dataclass
class Draws:
    """Every patient-level random draw, kept as standard normals so patients can be re-simulated."""

    background: np.ndarray  # patients x programmes
    private: dict[str, np.ndarray]  # layer -> patients x state size
    purity: np.ndarray
    measurement: dict[str, np.ndarray] | None  # layer -> patients x features; None when noise-free

    def take(self, rows: np.ndarray) -> Draws:
        """The draws of some patients only."""
        private = {k: v[rows] for k, v in self.private.items()}
        measurement = None if self.measurement is None else {k: v[rows] for k, v in self.measurement.items()}
        return Draws(self.background[rows], private, self.purity[rows], measurement)


def effect_strength(config: SimulationConfig) -> dict[str, float]:
    """The documented RMS programme shift of every driver (0 for the zero-effect drivers)."""
    strong, weak = config.strong_effect, config.weak_effect
    return {
        d: 0.0 if d in ZERO_EFFECT_DRIVERS else strong if d in STRONG_DRIVERS else weak for d in SEED_DRIVERS
    }


def unit_rms(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random direction with root-mean-square 1, so effect sizes are exactly the documented ones."""
    vector = rng.normal(size=size)
    return vector / np.sqrt(np.mean(vector**2))


def random_map(rng: np.random.Generator, rows: int, columns: int, gain: float = 1.5) -> np.ndarray:
    return rng.normal(scale=gain / np.sqrt(rows), size=(rows, columns))


def feature_names(config: SimulationConfig, rng: np.random.Generator) -> dict[str, list[str]]:
    """Gene-like RNA/protein names (the drivers' genes first), PTM sites on those genes, metabolites."""
    synthetic = [f"G{i + 1:04d}" for i in range(max(config.n_rna_features, config.n_protein_features))]
    genes = list(GENE_NAMES) + synthetic
    names = {"rna": genes[: config.n_rna_features], "protein": genes[: config.n_protein_features]}
    for ptm in SEED_PTMS:
        sites: dict[str, None] = {}
        while len(sites) < config.n_ptm_features:
            gene = names["protein"][rng.integers(len(names["protein"]))]
            sites[f"{gene}_{rng.choice(list(RESIDUES[ptm]))}{rng.integers(2, 1500)}"] = None
        names[ptm] = list(sites)
    names["metabolome"] = [f"MET{i + 1:03d}" for i in range(config.n_metabolome_features)]
    return names


def draw_world(config: SimulationConfig, rng: np.random.Generator) -> World:
    """Draw the generative parameters around the fixed design choices of `config`."""
    strength, P, S = effect_strength(config), config.programme_dim, config.state_dim
    weights = np.array([strength[d] * unit_rms(rng, P) for d in SEED_DRIVERS])
    features = feature_names(config, rng)
    maps = {"rna": random_map(rng, P, S)}
    maps |= {k: random_map(rng, S, S) for k in ("protein", "phospho", "acetyl", "ubiq")}
    maps["pY"] = random_map(rng, S, config.pY_state_dim)
    gains = {k: config.leader_weight if k == config.leader else config.follower_weight for k in SEED_PTMS}
    metabolome_maps = {k: random_map(rng, config.state_size(k), S, gains[k]) for k in SEED_PTMS}
    loadings = {k: random_map(rng, config.state_size(k), config.n_features(k), 1.0) for k in LAYERS}
    stroma = {k: rng.normal(scale=config.stroma_sd, size=config.n_features(k)) for k in LAYERS}
    own_gene = {
        layer: [
            (SEED_DRIVERS.index(d), features[layer].index(gene), sign * config.own_gene_effect)
            for d, (gene, sign) in OWN_GENE.items()
        ]
        for layer in ("rna", "protein")
    }
    interaction, grade = config.interaction_effect * unit_rms(rng, P), config.grade_effect * unit_rms(rng, P)
    # Drawn after everything else, whatever the nonlinearity: the other parameters stay those of the
    # original simulator, and cohorts that differ only in their nonlinearity share one world.
    pairs = np.array([unit_rms(rng, P) for _ in NONLINEAR_PAIRS])
    return World(
        weights, interaction, grade, maps, metabolome_maps, loadings, stroma, own_gene, features, pairs
    )


def conditional_prevalence(driver: str) -> tuple[str, float, float]:
    """(partner, P(driver | partner), P(driver | no partner)) that keep the marginal on target."""
    partner, with_partner = ENRICHMENT[driver]
    members = ETS_FUSIONS if partner == "ETS" else (partner,)
    partner_rate = sum(TARGET_PREVALENCE[d] for d in members)
    without = (TARGET_PREVALENCE[driver] - partner_rate * with_partner) / (1 - partner_rate)
    return partner, with_partner, without


def draw_drivers(n: int, rng: np.random.Generator) -> np.ndarray:
    """Binary patients x drivers: one categorical ETS fusion, SPOP only without ETS, enrichments kept."""
    drivers = np.zeros((n, len(SEED_DRIVERS)), dtype=np.int64)
    ets_rates = [TARGET_PREVALENCE[d] for d in ETS_FUSIONS]
    fusion = rng.choice(len(ETS_FUSIONS) + 1, size=n, p=ets_rates + [1 - sum(ets_rates)])
    present = {"ETS": fusion < len(ETS_FUSIONS)} | {d: fusion == i for i, d in enumerate(ETS_FUSIONS)}
    for d in SEED_DRIVERS:
        if d not in ETS_FUSIONS:
            rate: float | np.ndarray = TARGET_PREVALENCE[d]
            if d in ENRICHMENT:
                partner, with_partner, without = conditional_prevalence(d)
                rate = np.where(present[partner], with_partner, without)
            present[d] = rng.random(n) < rate
        drivers[:, SEED_DRIVERS.index(d)] = present[d]
    return drivers


def draw_gleason(drivers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gleason scores 6..10, cut from a latent aggressiveness that some drivers raise."""
    push = sum(w * drivers[:, SEED_DRIVERS.index(d)] for d, w in AGGRESSIVENESS.items())
    return 6 + np.searchsorted(GLEASON_CUTPOINTS, push + rng.normal(size=len(drivers)))


def draw_patients(config: SimulationConfig, n: int, rng: np.random.Generator, measured: bool = True) -> Draws:
    """Background programmes, private states, purity and (optionally) measurement noise."""
    background = rng.normal(size=(n, config.programme_dim))
    private = {k: rng.normal(size=(n, config.state_size(k))) for k in LAYERS}
    purity = rng.beta(PURITY_A, PURITY_B, size=n)
    measurement = {k: rng.normal(size=(n, config.n_features(k))) for k in LAYERS} if measured else None
    return Draws(background, private, purity, measurement)


def driver_term(drivers: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """drivers @ weights summed over non-zero rows only: a zero-effect driver adds exactly nothing."""
    total = np.zeros((len(drivers), weights.shape[1]))
    for k in np.flatnonzero(np.any(weights != 0, axis=1)):
        total += drivers[:, k, None] * weights[k]
    return total


def both_present(drivers: np.ndarray, pair: tuple[str, str]) -> np.ndarray:
    """1 for the patients who carry both drivers of the pair, else 0."""
    return drivers[:, SEED_DRIVERS.index(pair[0])] * drivers[:, SEED_DRIVERS.index(pair[1])]


def pooled_r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    """1 - SS_res / SS_tot, with both sums over patients and all PC columns."""
    return float(1 - np.sum((observed - predicted) ** 2) / np.sum((observed - observed.mean(axis=0)) ** 2))


@dataclass
class Simulator:
    """The generative flow of one world, and the projectors fitted on its observed cohort."""

    config: SimulationConfig
    world: World
    projectors: dict[str, LayerProjector] = field(default_factory=dict)

    def link(self, inflow: np.ndarray) -> np.ndarray:
        """tanh((1 + nonlinearity) * inflow): plain tanh at 0, a near-step at 2-3 (range (-1, 1) always)."""
        return np.tanh((1.0 + self.config.nonlinearity) * inflow)  # x 1.0 is exact: the default is unchanged

    def pair_term(self, drivers: np.ndarray) -> np.ndarray:
        """Extra programme shifts of co-occurring strong drivers: nonlinearity x (ERG x PTEN's, 13 others)."""
        a = self.config.nonlinearity
        total = both_present(drivers, INTERACTION)[:, None] * (a * self.world.interaction)
        for pair, direction in zip(NONLINEAR_PAIRS, self.world.pair_directions):
            total += both_present(drivers, pair)[:, None] * (a * self.config.interaction_effect * direction)
        return total

    def states(self, drivers: np.ndarray, gleason: np.ndarray, draws: Draws) -> dict[str, np.ndarray]:
        """Drivers -> programmes -> RNA -> protein -> PTMs -> metabolome: tanh links plus private parts."""
        w, private_sd, link = self.world, self.config.private_sd_of, self.link
        pair = both_present(drivers, INTERACTION)
        programmes = (
            driver_term(drivers, w.programme_weights)
            + pair[:, None] * w.interaction
            + (gleason - 7.0)[:, None] * w.grade_direction
            + draws.background
        )
        if self.config.nonlinearity > 0:  # skipped at 0, so the default programmes are bit for bit unchanged
            programmes = programmes + self.pair_term(drivers)
        private = {k: private_sd(k) * v for k, v in draws.private.items()}
        states = {"rna": link(programmes @ w.maps["rna"]) + private["rna"]}
        states["protein"] = link(states["rna"] @ w.maps["protein"]) + private["protein"]
        for k in ("phospho", "acetyl", "ubiq"):
            states[k] = link(states["protein"] @ w.maps[k]) + private[k]
        states["pY"] = link(states["phospho"] @ w.maps["pY"]) + private["pY"]
        states["methyl"] = private["methyl"]
        inflow = sum(states[k] @ w.metabolome_maps[k] for k in SEED_PTMS)
        states["metabolome"] = link(inflow) + private["metabolome"]
        return states

    def observe(
        self,
        layer: str,
        state: np.ndarray,
        drivers: np.ndarray,
        purity: np.ndarray,
        measurement: dict[str, np.ndarray] | None,
    ) -> np.ndarray:
        """Raw features: purity x (state signal + own-gene effects) + (1 - purity) x stroma + noise."""
        tumour = state @ self.world.loadings[layer]
        for driver, feature, shift in self.world.own_gene.get(layer, []):
            tumour[:, feature] += shift * drivers[:, driver]
        raw = purity[:, None] * tumour + (1 - purity[:, None]) * self.world.stroma[layer]
        if measurement is not None:
            raw += self.config.noise_sd_of(layer) * measurement[layer]
        return raw

    def raw(
        self, drivers: np.ndarray, gleason: np.ndarray, draws: Draws, layers: tuple[str, ...] = LAYERS
    ) -> dict[str, np.ndarray]:
        states = self.states(drivers, gleason, draws)
        return {k: self.observe(k, states[k], drivers, draws.purity, draws.measurement) for k in layers}

    def frame(self, layer: str, raw: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(raw, columns=self.world.features[layer])

    def fit(self, raw: dict[str, np.ndarray]) -> None:
        seed, n_components = self.config.seed, self.config.n_components
        self.projectors = {k: LayerProjector(n_components, seed) for k in raw}
        for k, v in raw.items():
            self.projectors[k].fit(self.frame(k, v))

    def pcs(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: self.projectors[k].transform(self.frame(k, v)).to_numpy() for k, v in raw.items()}

    def genomics_expectation(
        self, drivers: np.ndarray, gleason: np.ndarray, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """E[PCs | drivers, Gleason], with the latent states averaged by Monte Carlo per distinct profile.

        Given the state, raw features are affine in purity (independent of the states) and in the
        measurement noise (mean 0), and the projection is affine: observing the mean state at the mean
        purity without noise gives the same expectation as averaging PCs, with less Monte Carlo error.
        """
        profiles, profile_of = np.unique(np.column_stack([drivers, gleason]), axis=0, return_inverse=True)
        R = self.config.monte_carlo_draws
        step = max(1, MC_CHUNK_ROWS // R)
        means: dict[str, list[np.ndarray]] = {k: [] for k in LAYERS}
        for start in range(0, len(profiles), step):
            chunk = np.repeat(profiles[start : start + step], R, axis=0)
            draws = draw_patients(self.config, len(chunk), rng, measured=False)
            for k, state in self.states(chunk[:, :-1], chunk[:, -1], draws).items():
                means[k].append(state.reshape(-1, R, state.shape[1]).mean(axis=1))
        purity = np.full(len(profiles), PURITY_A / (PURITY_A + PURITY_B))
        mean_states = {k: np.concatenate(v) for k, v in means.items()}
        raw = {k: self.observe(k, v, profiles[:, :-1], purity, None) for k, v in mean_states.items()}
        return {k: v[profile_of.ravel()] for k, v in self.pcs(raw).items()}

    def layer_truth(
        self,
        drivers: np.ndarray,
        gleason: np.ndarray,
        draws: Draws,
        scores: dict[str, np.ndarray],
        mc_rng: np.random.Generator,
    ) -> pd.DataFrame:
        """Per layer: noise and genomics ceilings and, for PTMs, the dependency R^2 (TRUTH_DEFINITIONS)."""
        noise_free = self.pcs(self.raw(drivers, gleason, replace(draws, measurement=None)))
        expected = self.genomics_expectation(drivers, gleason, mc_rng)
        rows = []
        for k in LAYERS:
            dependency = np.nan
            if k in SEED_PTMS:
                private = draws.private | {k: np.zeros_like(draws.private[k])}
                silent_noise = np.zeros((len(drivers), self.config.n_features(k)))
                measurement = (draws.measurement or {}) | {k: silent_noise}
                silent = replace(draws, private=private, measurement=measurement)
                dependency = pooled_r2(scores[k], self.pcs(self.raw(drivers, gleason, silent, (k,)))[k])
            rows.append(
                {
                    "layer": k,
                    "role": "target" if k in TARGETS else "ptm",
                    "noise_ceiling": pooled_r2(scores[k], noise_free[k]),
                    "genomics_ceiling": pooled_r2(scores[k], expected[k]),
                    "ptm_dependency_r2": dependency,
                    "is_leader": k == self.config.leader,
                }
            )
        return pd.DataFrame(rows)

    def knockout_effects(
        self, drivers: np.ndarray, gleason: np.ndarray, draws: Draws, scores: dict[str, np.ndarray]
    ) -> pd.DataFrame:
        """Per (driver, layer): mean over carriers of the RMS change when the driver alone is set to 0.

        Factual and counterfactual are recomputed by the same code on the same carriers and draws, so a
        driver without downstream effect gives identical arrays and an effect of exactly 0.
        """
        rows = []
        for j, d in enumerate(SEED_DRIVERS):
            carriers = np.flatnonzero(drivers[:, j])
            effects = {k: (np.nan, np.nan) for k in LAYERS}
            if len(carriers):
                knocked = drivers[carriers].copy()
                knocked[:, j] = 0
                mine = draws.take(carriers)
                factual = self.raw(drivers[carriers], gleason[carriers], mine)
                counterfactual = self.raw(knocked, gleason[carriers], mine)
                pc_f, pc_c = self.pcs(factual), self.pcs(counterfactual)
                for k in LAYERS:
                    z_change = (counterfactual[k] - factual[k]) / self.projectors[k].scaler_.scale_
                    effects[k] = (mean_rms(pc_c[k] - pc_f[k]), mean_rms(z_change))
            for k, (pc, z) in effects.items():
                rows.append(
                    {
                        "driver": d,
                        "layer": k,
                        "n_carriers": len(carriers),
                        "zero_effect": d in ZERO_EFFECT_DRIVERS,
                        "effect_rms_pc": pc,
                        "effect_rms_raw": z,
                        "effect_std": pc / float(np.sqrt(np.mean(scores[k] ** 2))),
                    }
                )
        return pd.DataFrame(rows)


def build_cohort(
    case_ids: pd.Index,
    drivers: np.ndarray,
    labels: list[str],
    scores: dict[str, np.ndarray],
    projectors: dict[str, LayerProjector],
) -> Cohort:
    """The PC-score cohort: clinical grade and label, drivers, every layer with its loadings."""
    grade = np.array([parse_grade(label) for label in labels], dtype=np.int64)
    clinical = pd.DataFrame(
        {"grade": grade, "grade_label": pd.Series(labels, index=case_ids, dtype="str")}, index=case_ids
    )
    layers = {}
    for k in LAYERS:
        loadings = projectors[k].loadings
        values = pd.DataFrame(scores[k], index=case_ids, columns=loadings.index)
        layers[k] = Layer(k, "target" if k in TARGETS else "ptm", values, loadings)
    return Cohort(clinical, pd.DataFrame(drivers, index=case_ids, columns=list(SEED_DRIVERS)), layers)


def simulate_cohort(config: SimulationConfig = SimulationConfig()) -> SimulatedCohort:
    """Simulate a cohort, project every layer to PCs, and compute its truth tables.

    BLAS runs single-threaded here: multi-threaded SVDs round differently with the number of threads,
    and the written cohort must be byte-identical whatever the machine's core count.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return run_simulation(config)


def run_simulation(config: SimulationConfig) -> SimulatedCohort:
    world_seed, patient_seed, mc_seed = np.random.SeedSequence(config.seed).spawn(3)
    sim = Simulator(config, draw_world(config, np.random.default_rng(world_seed)))
    rng, n = np.random.default_rng(patient_seed), config.n_patients
    drivers = draw_drivers(n, rng)
    gleason = draw_gleason(drivers, rng)
    unknown = rng.random(n) < config.unknown_grade_fraction
    labels = ["" if hidden else str(score) for hidden, score in zip(unknown, gleason)]
    draws = draw_patients(config, n, rng)
    raw = sim.raw(drivers, gleason, draws)
    sim.fit(raw)
    scores = sim.pcs(raw)
    case_ids = pd.Index([f"SIM{i + 1:04d}" for i in range(n)], name=CASE_ID)
    layer_truth = sim.layer_truth(drivers, gleason, draws, scores, np.random.default_rng(mc_seed))
    return SimulatedCohort(
        cohort=build_cohort(case_ids, drivers, labels, scores, sim.projectors),
        truth=truth_record(config, drivers, layer_truth),
        knockout_effects=sim.knockout_effects(drivers, gleason, draws, scores),
        layer_truth=layer_truth,
    )


TRUTH_DEFINITIONS = {
    "noise_ceiling": "pooled R^2 (over patients and PCs) of the PCs of the raw features without measurement "
    "noise, through the same projector, against the observed PCs: the best achievable held-out R^2",
    "genomics_ceiling": "pooled R^2 of E[PCs | drivers, Gleason score] (Monte Carlo over all other draws) "
    "against the observed PCs; it conditions on the score even where the label is hidden",
    "ptm_dependency_r2": "pooled R^2 of the PTM's PCs regenerated with its own private part and measurement "
    "noise at 0 against the observed PCs: an approximate upper bound of its predictability from other layers",
    "knockout": "mean over carriers of the RMS change over PCs (or z-scored raw features) when the driver "
    "alone is set to 0 with every draw, purity and grade held identical",
}


def truth_record(config: SimulationConfig, drivers: np.ndarray, layer_truth: pd.DataFrame) -> dict:
    """The JSON-serialisable truth: design choices, derived conditionals and computed ceilings."""
    layers = {
        row["layer"]: {k: None if v != v else v for k, v in row.items() if k != "layer"}  # NaN -> null
        for row in layer_truth.astype(object).to_dict("records")
    }
    keys = ("partner", "p_with_partner", "p_without_partner")
    record = {
        "seed": config.seed,
        "n_patients": config.n_patients,
        "config": asdict(config),
        "drivers": list(SEED_DRIVERS),
        "target_prevalence": TARGET_PREVALENCE,
        "observed_prevalence": {d: float(drivers[:, j].mean()) for j, d in enumerate(SEED_DRIVERS)},
        "enrichment": {d: dict(zip(keys, conditional_prevalence(d))) for d in ENRICHMENT},
        "mutually_exclusive": [list(ETS_FUSIONS), ["ERG", "SPOP"]],
        "zero_effect_drivers": list(ZERO_EFFECT_DRIVERS),
        "effect_strength": effect_strength(config),
        "own_gene_shift": {d: {g: s * config.own_gene_effect} for d, (g, s) in OWN_GENE.items()},
        "interaction": {
            "drivers": list(INTERACTION),
            "effect": config.interaction_effect,
            "form": "programme shift added only when both drivers are present",
        },
        "grade": {
            "aggressiveness": AGGRESSIVENESS,
            "gleason_cutpoints": list(GLEASON_CUTPOINTS),
            "programme_effect_per_point": config.grade_effect,
            "unknown_fraction": config.unknown_grade_fraction,
        },
        "leader": config.leader,
        "ptm_parents": PTM_PARENTS,
        "metabolome_weights": {
            k: config.leader_weight if k == config.leader else config.follower_weight for k in SEED_PTMS
        },
        "noise_sd": {
            "private": {k: config.private_sd_of(k) for k in LAYERS},
            "measurement": {k: config.noise_sd_of(k) for k in LAYERS},
            "stroma": config.stroma_sd,
            "purity": f"Beta({PURITY_A}, {PURITY_B})",
        },
        "layers": layers,
        "definitions": TRUTH_DEFINITIONS,
    }
    if config.nonlinearity == 0:  # absent means 0, as in cohorts written before the parameter existed:
        del record["config"]["nonlinearity"]  # the default truth.json stays byte-identical to theirs
        return record
    a, effect = config.nonlinearity, config.interaction_effect
    record["interaction"]["effect"] = (1 + a) * effect
    return record | {
        "nonlinearity": {
            "value": a,
            "link": f"tanh({1 + a:g} * inflow) at every layer, instead of tanh(inflow)",
            "interaction_effect": (1 + a) * effect,
            "driver_pairs": [list(pair) for pair in NONLINEAR_PAIRS],
            "pair_effect": a * effect,
            "form": (
                "each pair's programme shift (its own random direction) is added only when both are present"
            ),
        }
    }


def write_simulated_cohort(sim: SimulatedCohort, folder: str | Path) -> Path:
    """Write the cohort in the seed layout plus truth.json, truth_knockout.csv and truth_layers.csv."""
    folder = write_seed_layout(sim.cohort, folder)
    text = json.dumps(sim.truth, sort_keys=True, indent=2) + "\n"
    (folder / "truth.json").write_text(text, encoding="utf-8")
    sim.knockout_effects.to_csv(folder / KNOCKOUT_TRUTH_FILE, index=False)
    sim.layer_truth.to_csv(folder / LAYER_TRUTH_FILE, index=False)
    return folder


# keys of the simulator's truth.json (`truth_record`) that the readers of a planted truth rely on
TRUTH_KEYS = ("config", "drivers", "layers", "leader", "zero_effect_drivers")


def read_truth(folder: str | Path) -> dict | None:
    """The planted truth of a simulated cohort folder, or None when it has no truth.json (the user's own).

    A truth.json that the simulator did not write (another tool's file, or one without the truth tables
    beside it) is an error, raised before anything relies on it rather than deep in the validation chapter.
    """
    path = Path(folder) / "truth.json"
    if not path.is_file():
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # not UTF-8, or not JSON
        problem = f"not readable as JSON ({error})"
    else:
        problem = _foreign_truth_problem(truth, Path(folder))
    if problem:
        raise ForeignTruthError(
            problem,
            file=path,
            hint="Move it out of the folder to analyse the cohort as your own (without the validation "
            "chapter), or simulate a new cohort (lpm simulate --out <new folder>).",
        )
    return truth


def _foreign_truth_problem(truth: object, folder: Path) -> str:
    """Why `truth` is not the simulator's record of a planted truth ("" when it is)."""
    if not isinstance(truth, dict):
        kind = "an array" if isinstance(truth, list) else "a single value"
        return f"it holds {kind}, not the JSON object of planted truth that the simulator writes"
    missing = [key for key in TRUTH_KEYS if key not in truth]
    if missing:
        return f"not the planted truth the simulator writes (it lacks {', '.join(missing)})"
    if not isinstance(truth["config"], dict):
        return "not the planted truth the simulator writes (its config is not an object)"
    tables = [name for name in (LAYER_TRUTH_FILE, KNOCKOUT_TRUTH_FILE) if not (folder / name).is_file()]
    if tables:
        return f"a planted truth without {' and '.join(tables)} beside it"
    return ""


def read_layer_truth(folder: str | Path) -> pd.DataFrame | None:
    """The per-layer truth table (noise ceilings, dependencies, leader) indexed by layer, or None."""
    path = Path(folder) / LAYER_TRUTH_FILE
    return pd.read_csv(path, index_col="layer") if path.is_file() else None


def read_knockout_truth(folder: str | Path) -> pd.DataFrame | None:
    """The true knockout effect of every driver on every layer, or None when the cohort was not simulated."""
    path = Path(folder) / KNOCKOUT_TRUTH_FILE
    return pd.read_csv(path) if path.is_file() else None
