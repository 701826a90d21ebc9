"""PATE: teachers on disjoint partitions of the private set, Gaussian noisy-max aggregation.

Papernot et al. 2018, "Scalable Private Learning with PATE":
- **GNMax**: answer ``argmax_j (n_j + N(0, σ²))`` over the teachers' vote histogram ``n``.
- **Confident GNMax**: first check ``max_j n_j + N(0, σ1²) ≥ T``; only then answer with GNMax(σ2),
  otherwise the query is not answered (the student does not get that input).

Accounting (written from the paper's formulas, :mod:`dmsfactory.privacy.rdp`):
- every threshold check is a Gaussian mechanism on ``max_j n_j`` (sensitivity 1): λ/(2σ1²) per query,
  charged data-independently for *every* query (answered or not);
- every answer is GNMax: data-independent λ/σ2² (Prop. 8), and the data-dependent Theorem 6 bound
  (Prop. 7's q̃ from the vote gaps) where it applies (it is the smaller of the two per order).
The data-independent ε is the guarantee this module enforces (the budget check uses it; a budget
decision based on the data-dependent ε would itself leak). The data-dependent ε is reported next to
it, as in the paper; publishing it as a DP statement would need the paper's smooth-sensitivity
step, which is not implemented here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dmsfactory.privacy.rdp import (
    DEFAULT_ORDERS,
    RDPAccountant,
    gaussian_rdp,
    gnmax_log_q,
    gnmax_rdp_data_dependent,
    gnmax_rdp_data_independent,
)

ACCOUNTANT_NAME = "pate_rdp_gnmax"


def vote_histogram(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(teachers, queries) int predictions -> (queries, classes) vote counts."""
    p = np.asarray(predictions)
    if p.ndim != 2:
        raise ValueError(f"predictions must be (teachers, queries), got shape {p.shape}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predictions must lie in [0, {num_classes})")
    q = p.shape[1]
    votes = np.zeros((q, num_classes), dtype=np.int64)
    for t in range(p.shape[0]):
        np.add.at(votes, (np.arange(q), p[t]), 1)
    return votes


def gnmax(votes: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Noisy argmax per row (σ = 0: plain plurality, ties to the lowest class)."""
    v = np.asarray(votes, dtype=np.float64)
    if sigma > 0:
        v = v + rng.normal(0.0, sigma, size=v.shape)
    return np.argmax(v, axis=1)


@dataclass
class PATEAccountant:
    """Tracks the RDP of a run of (confident) GNMax queries, both bounds."""

    sigma: float  # GNMax noise std (vote units)
    sigma_threshold: float | None = None  # σ1 of the confident-GNMax check; None = plain GNMax
    orders: tuple[float, ...] = DEFAULT_ORDERS
    queries: int = 0
    answered: int = 0
    indep: RDPAccountant = field(init=False)
    dep: RDPAccountant = field(init=False)

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise ValueError(f"pate sigma must be > 0 (got {self.sigma})")
        if self.sigma_threshold is not None and self.sigma_threshold <= 0:
            raise ValueError(f"pate sigma_threshold must be > 0 (got {self.sigma_threshold})")
        self.indep = RDPAccountant(self.orders)
        self.dep = RDPAccountant(self.orders)
        self._gnmax_indep = gnmax_rdp_data_independent(self.orders, self.sigma)
        self._check = (
            gaussian_rdp(self.orders, self.sigma_threshold, 1.0) if self.sigma_threshold is not None else None
        )

    def charge_check(self, n: int = 1) -> None:
        if self._check is not None:
            self.indep.add(self._check, n)
            self.dep.add(self._check, n)
        self.queries += n

    def charge_answer(self, votes: np.ndarray) -> None:
        self.indep.add(self._gnmax_indep)
        self.dep.add(gnmax_rdp_data_dependent(self.orders, self.sigma, gnmax_log_q(votes, self.sigma)))
        self.answered += 1
        if self._check is None:
            self.queries += 1

    def epsilon_if(self, delta: float, checks: int, answers: int) -> float:
        """Data-independent ε after ``checks`` more threshold checks and ``answers`` more answers."""
        acc = self.indep.copy()
        if self._check is not None:
            acc.add(self._check, checks)
        acc.add(self._gnmax_indep, answers)
        return acc.get_epsilon(delta)

    def epsilon(self, delta: float) -> float:
        return self.indep.get_epsilon(delta)

    def epsilon_data_dependent(self, delta: float) -> float:
        return self.dep.get_epsilon(delta)


def calibrate_sigma(
    epsilon: float,
    delta: float,
    queries: int,
    threshold_ratio: float | None = None,
    orders=DEFAULT_ORDERS,
) -> float:
    """Smallest GNMax σ (bisection) with data-independent ε ≤ ``epsilon`` for ``queries`` answers.

    With confident GNMax (``threshold_ratio`` = σ1/σ2), every query pays a check and is assumed
    answered (worst case), so the budget holds whatever the answer rate.
    """
    if epsilon <= 0 or queries <= 0:
        raise ValueError("epsilon and queries must be > 0")

    def eps_of(s: float) -> float:
        acc = RDPAccountant(orders)
        acc.add(gnmax_rdp_data_independent(orders, s), queries)
        if threshold_ratio is not None:
            acc.add(gaussian_rdp(orders, s * threshold_ratio, 1.0), queries)
        return acc.get_epsilon(delta)

    lo, hi = 1e-3, 1.0
    while eps_of(hi) > epsilon * (1 - 1e-6):
        hi *= 2
        if hi > 1e7:
            raise ValueError(f"cannot reach epsilon={epsilon} with {queries} queries")
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if eps_of(mid) > epsilon * (1 - 1e-6):  # margin for summation order in the accountant
            lo = mid
        else:
            hi = mid
    return hi


@dataclass
class AggregationResult:
    labels: np.ndarray  # (queries,) answered label or -1
    answered: np.ndarray  # (queries,) bool
    stopped_at: int | None  # index of the first query not asked because of the budget
    epsilon: float
    epsilon_data_dependent: float
    ledger: list[dict]


def aggregate(
    votes: np.ndarray,
    *,
    sigma: float,
    delta: float,
    budget_epsilon: float,
    rng: np.random.Generator,
    threshold: float | None = None,
    sigma_threshold: float | None = None,
    ledger_every: int = 50,
    accountant: PATEAccountant | None = None,
) -> AggregationResult:
    """Answer queries in order with (confident) GNMax until the budget would be exceeded.

    Before each query the data-independent ε after a worst-case charge (check + answer) is computed;
    if it would exceed ``budget_epsilon`` no further query is asked. A ledger entry is written every
    ``ledger_every`` queries and at the end.
    """
    v = np.asarray(votes)
    if (threshold is None) != (sigma_threshold is None):
        raise ValueError("pate: set both threshold and sigma_threshold (confident GNMax) or neither")
    acc = accountant or PATEAccountant(sigma=sigma, sigma_threshold=sigma_threshold)
    labels = np.full(len(v), -1, dtype=np.int64)
    answered = np.zeros(len(v), dtype=bool)
    ledger: list[dict] = []
    stopped = None

    def entry(stopped_flag: bool = False) -> dict:
        e = {
            "accountant": ACCOUNTANT_NAME,
            "noise_multiplier": float(sigma),
            "sigma_threshold": None if sigma_threshold is None else float(sigma_threshold),
            "threshold": None if threshold is None else float(threshold),
            "sample_rate": 1.0,
            "steps": int(acc.queries),
            "answered": int(acc.answered),
            "delta": float(delta),
            "epsilon": float(acc.epsilon(delta)),
            "epsilon_data_dependent": float(acc.epsilon_data_dependent(delta)),
        }
        if stopped_flag:
            e["stopped"] = "budget"
        return e

    for i in range(len(v)):
        if acc.epsilon_if(delta, 1 if threshold is not None else 0, 1) > budget_epsilon:
            stopped = i
            break
        if threshold is not None:
            acc.charge_check()
            if v[i].max() + rng.normal(0.0, sigma_threshold) < threshold:
                if (i + 1) % ledger_every == 0:
                    ledger.append(entry())
                continue
        labels[i] = int(gnmax(v[i : i + 1], sigma, rng)[0])
        answered[i] = True
        acc.charge_answer(v[i])
        if (i + 1) % ledger_every == 0:
            ledger.append(entry())
    ledger.append(entry(stopped is not None))
    return AggregationResult(
        labels=labels,
        answered=answered,
        stopped_at=stopped,
        epsilon=acc.epsilon(delta),
        epsilon_data_dependent=acc.epsilon_data_dependent(delta),
        ledger=ledger,
    )
