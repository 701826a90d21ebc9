"""Rényi-DP accounting for PATE, written from the papers' formulas.

References
- Mironov 2017, "Rényi Differential Privacy" (RDP; Gaussian mechanism; composition; RDP -> (ε, δ)).
- Papernot, Song, Mironov, Raghunathan, Talwar, Erlingsson 2018, "Scalable Private Learning with
  PATE" (ICLR 2018): GNMax is (λ, λ/σ²)-RDP (Prop. 8, data-independent); Theorem 6 + Prop. 7 give a
  data-dependent bound when the teachers' votes have a clear winner.
- Balle et al. 2020 / Canonne et al. 2020: the tighter RDP -> (ε, δ) conversion
  ε = rdp + log((λ-1)/λ) - (log δ + log λ)/(λ-1), which is also what Google's ``dp-accounting`` uses.

Everything here is plain numpy/math and works per order λ on a fixed grid of orders.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np

# Orders λ > 1 (a dense grid at small orders, then a geometric tail; the data-dependent bound of
# Theorem 6 is typically attained at moderate orders).
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5]
    + list(range(5, 64))
    + [64.0 * 1.25**i for i in range(0, 25)]
)

Conversion = Literal["improved", "classic"]


def gaussian_rdp(orders: Sequence[float], sigma: float, sensitivity: float = 1.0) -> np.ndarray:
    """RDP of the Gaussian mechanism with L2 sensitivity Δ and noise std σ: λ Δ² / (2 σ²)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 (got {sigma})")
    a = np.asarray(orders, dtype=np.float64)
    return a * sensitivity**2 / (2.0 * sigma**2)


def gnmax_rdp_data_independent(orders: Sequence[float], sigma: float) -> np.ndarray:
    """GNMax with noise σ on the vote histogram is (λ, λ/σ²)-RDP (Papernot et al. 2018, Prop. 8).

    One teacher changing its vote moves two counts by 1: L2 sensitivity √2, so λ·2/(2σ²) = λ/σ²;
    the argmax is post-processing.
    """
    return gaussian_rdp(orders, sigma, sensitivity=math.sqrt(2.0))


def gnmax_log_q(votes: Sequence[float], sigma: float) -> float:
    """log of q̃, the upper bound on Pr[GNMax(votes) ≠ argmax votes] (Papernot et al. 2018, Prop. 7).

    q̃ = Σ_{i ≠ i*} ½ erfc((n_{i*} − n_i) / (2σ)) (a union bound over the Gaussian differences),
    clipped to at most 1. Computed in log space so that very clear votes do not underflow to 0.
    """
    from scipy.special import log_ndtr, logsumexp  # heavy: scipy

    v = np.asarray(votes, dtype=np.float64)
    if v.ndim != 1 or len(v) < 2:
        raise ValueError("votes must be a 1-D histogram over at least 2 classes")
    top = int(np.argmax(v))
    gaps = v[top] - np.delete(v, top)
    # ½ erfc(g/(2σ)) = Pr[N(0, 2σ²) ≥ g] = Φ(−g/(σ√2))
    terms = log_ndtr(-gaps / (sigma * math.sqrt(2.0)))
    return float(min(0.0, logsumexp(terms)))


def gnmax_rdp_data_dependent(orders: Sequence[float], sigma: float, log_q: float) -> np.ndarray:
    """Data-dependent RDP of one GNMax answer (Papernot et al. 2018, Theorem 6 with Prop. 7/8).

    Theorem 6: if M is (μ1, ε1)- and (μ2, ε2)-RDP, Pr[M(D) ≠ i*] ≤ q̃, λ ≤ μ1 and
    q̃ ≤ e^{(μ2−1)ε2} / (μ1/(μ1−1) · μ2/(μ2−1))^{μ2}, then
        D_λ ≤ 1/(λ−1) · log((1−q̃)·A^{λ−1} + q̃·B^{λ−1}),
        A = (1−q̃) / (1 − (q̃ e^{ε2})^{(μ2−1)/μ2}),   B = e^{ε1} / q̃^{1/(μ1−1)}.
    For GNMax ε_i = μ_i/σ²; following the paper, μ2 = σ·sqrt(log(1/q̃)), μ1 = μ2 + 1. Where the
    conditions fail (or for λ > μ1) the data-independent λ/σ² is used; the result is the smaller of
    the two bounds per order.
    """
    a = np.asarray(orders, dtype=np.float64)
    indep = gnmax_rdp_data_independent(a, sigma)
    if log_q > 0:
        raise ValueError(f"log_q must be <= 0 (got {log_q})")
    if math.isinf(log_q):  # the outcome is certain: the release says nothing about D
        return np.zeros_like(a)
    if log_q >= 0:
        return indep
    mu2 = sigma * math.sqrt(-log_q)
    mu1 = mu2 + 1.0
    if mu2 <= 1.0:
        return indep
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    # condition on q̃, in log space
    log_cond = (mu2 - 1.0) * eps2 + mu2 * (math.log1p(-1.0 / mu1) + math.log1p(-1.0 / mu2))
    if log_q > log_cond:
        return indep
    inner = (mu2 - 1.0) / mu2 * (log_q + eps2)  # log of (q̃ e^{ε2})^{(μ2−1)/μ2}; < 0 under the condition
    if inner >= 0:
        return indep
    log1mq = math.log1p(-math.exp(log_q)) if log_q < -1e-12 else -math.inf
    if not math.isfinite(log1mq):
        return indep
    log_a = log1mq - math.log(-math.expm1(inner))
    log_b = eps1 - log_q / (mu1 - 1.0)
    out = indep.copy()
    ok = (a > 1.0) & (a <= mu1)
    lam = a[ok]
    t1 = log1mq + (lam - 1.0) * log_a
    t2 = log_q + (lam - 1.0) * log_b
    dep = np.logaddexp(t1, t2) / (lam - 1.0)
    out[ok] = np.minimum(dep, indep[ok])
    return out


def rdp_to_epsilon(
    orders: Sequence[float], rdp: Sequence[float], delta: float, conversion: Conversion = "improved"
) -> tuple[float, float]:
    """(ε, best order) for total RDP curve ``rdp`` at ``delta``.

    ``classic``: ε = min_λ rdp(λ) + log(1/δ)/(λ−1) (Mironov 2017, Prop. 3).
    ``improved``: ε = min_λ rdp(λ) + log((λ−1)/λ) − (log δ + log λ)/(λ−1) (Balle et al. 2020).
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1) (got {delta})")
    a = np.asarray(orders, dtype=np.float64)
    r = np.asarray(rdp, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError("orders and rdp must have the same length")
    if np.any(a <= 1):
        raise ValueError("all orders must be > 1")
    if conversion == "classic":
        eps = r + math.log(1.0 / delta) / (a - 1.0)
    elif conversion == "improved":
        eps = r + np.log1p(-1.0 / a) - (math.log(delta) + np.log(a)) / (a - 1.0)
    else:
        raise ValueError(f"conversion must be 'improved' or 'classic' (got {conversion!r})")
    eps = np.where(np.isfinite(eps), eps, np.inf)
    i = int(np.argmin(eps))
    return max(0.0, float(eps[i])), float(a[i])


def gaussian_composition_epsilon_closed_form(sigma_rdp_coeff: float, delta: float) -> float:
    """Closed form of min over real λ > 1 of c·λ + log(1/δ)/(λ−1) (classic conversion).

    For a mechanism whose total RDP is c·λ (e.g. Q GNMax answers: c = Q/σ²), the minimiser is
    λ* = 1 + sqrt(log(1/δ)/c) and ε = c + 2·sqrt(c·log(1/δ)).
    """
    b = math.log(1.0 / delta)
    return sigma_rdp_coeff + 2.0 * math.sqrt(sigma_rdp_coeff * b)


class RDPAccountant:
    """Accumulates an RDP curve over a fixed grid of orders (composition is addition per order)."""

    def __init__(self, orders: Sequence[float] = DEFAULT_ORDERS):
        self.orders = np.asarray(orders, dtype=np.float64)
        if np.any(self.orders <= 1):
            raise ValueError("all orders must be > 1")
        self.rdp = np.zeros_like(self.orders)

    def add(self, rdp: np.ndarray, times: int = 1) -> None:
        rdp = np.asarray(rdp, dtype=np.float64)
        if rdp.shape != self.orders.shape:
            raise ValueError("rdp curve must match the accountant's orders")
        self.rdp = self.rdp + times * rdp

    def get_epsilon(self, delta: float, conversion: Conversion = "improved") -> float:
        if not np.any(self.rdp):
            return 0.0
        return rdp_to_epsilon(self.orders, self.rdp, delta, conversion)[0]

    def get_epsilon_and_order(self, delta: float, conversion: Conversion = "improved") -> tuple[float, float]:
        return rdp_to_epsilon(self.orders, self.rdp, delta, conversion)

    def copy(self) -> "RDPAccountant":
        c = RDPAccountant(self.orders)
        c.rdp = self.rdp.copy()
        return c
