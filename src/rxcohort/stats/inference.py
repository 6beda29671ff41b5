"""Small estimators on numpy arrays: paired and Welch t, Wilson, Newcombe, MOVER, ratio, OLS.

Every function returns plain floats, NaN where a quantity is undefined (too few persons, no
variance, a zero denominator), and never raises on such data: a drug group nobody used must
give a row of NaN, not stop a study. Confidence intervals are two-sided at ``CONFIDENCE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
NAN = float("nan")

# Below this relative size a standard error is rounding noise (e.g. identical values whose
# mean is not exactly representable), and a t statistic built on it would be meaningless.
_RELATIVE_ZERO = 1e-12


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its two-sided confidence interval and p value (NaN if undefined)."""

    estimate: float
    ci_low: float = NAN
    ci_high: float = NAN
    p_value: float = NAN
    se: float = NAN
    df: float = NAN


def _t_crit(df: float) -> float:
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def _z_crit() -> float:
    return float(stats.norm.ppf(0.5 + CONFIDENCE / 2))


def _is_zero(se: float, scale: float) -> bool:
    return not math.isfinite(se) or se <= _RELATIVE_ZERO * max(1.0, abs(scale))


def _t_estimate(estimate: float, se: float, df: float, scale: float) -> Estimate:
    if not math.isfinite(estimate) or not df > 0 or _is_zero(se, scale):
        return Estimate(estimate, se=se if math.isfinite(se) else NAN, df=df)
    half = _t_crit(df) * se
    p_value = float(2 * stats.t.sf(abs(estimate / se), df))
    return Estimate(estimate, estimate - half, estimate + half, p_value, se, df)


def paired_mean(differences: np.ndarray) -> Estimate:
    """Mean of per-person differences with the paired (one-sample) t interval and p value.

    Equivalent to ``scipy.stats.ttest_rel(post, pre)`` on the two columns.
    """
    d = np.asarray(differences, dtype=float)
    n = d.size
    if n == 0:
        return Estimate(NAN)
    mean = float(d.mean())
    if n < 2:
        return Estimate(mean)
    se = float(d.std(ddof=1) / math.sqrt(n))
    return _t_estimate(mean, se, n - 1, float(np.abs(d).max()))


def mean_from_summary(mean: float, sd: float, n: int) -> Estimate:
    """A mean known by its summary (mean, sample sd, n) with the one-sample t interval."""
    if n <= 0 or not math.isfinite(mean):
        return Estimate(NAN)
    if n < 2 or not math.isfinite(sd):
        return Estimate(mean)
    return _t_estimate(mean, sd / math.sqrt(n), n - 1, abs(mean) + sd)


def welch_difference(x: np.ndarray, y: np.ndarray) -> Estimate:
    """mean(x) - mean(y) with Welch's unequal-variance t interval and two-sided p value.

    Equivalent to ``scipy.stats.ttest_ind(x, y, equal_var=False)``. Undefined (NaN interval)
    when either sample has fewer than two values, because its variance is then unknown.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    nx, ny = x.size, y.size
    if nx == 0 or ny == 0:
        return Estimate(NAN)
    estimate = float(x.mean() - y.mean())
    if nx < 2 or ny < 2:
        return Estimate(estimate)
    vx = float(x.var(ddof=1)) / nx
    vy = float(y.var(ddof=1)) / ny
    se = math.sqrt(vx + vy)
    scale = max(float(np.abs(x).max()), float(np.abs(y).max()))
    if _is_zero(se, scale):
        return Estimate(estimate, se=se)
    df = (vx + vy) ** 2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    return _t_estimate(estimate, se, df, scale)


def wilson(successes: int, n: int) -> Estimate:
    """A proportion with the Wilson score interval (no continuity correction)."""
    if n <= 0:
        return Estimate(NAN)
    z = _z_crit()
    p = successes / n
    denominator = n + z * z
    centre = (successes + z * z / 2) / denominator
    half = z * math.sqrt(successes * (n - successes) / n + z * z / 4) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def newcombe_paired(*, both: int, first_only: int, second_only: int, neither: int) -> Estimate:
    """Difference p_first - p_second of two proportions measured on the same persons.

    Newcombe's hybrid score interval for paired data (Stat Med 1998;17:2635, method 10): the
    Wilson intervals of the two marginal proportions combined by square-and-add, corrected
    for their correlation phi estimated from the 2x2 table (phi = 0 when a margin is empty,
    with the correction of ad - bc by n/2 that Newcombe gives). Unlike the Wald interval it
    stays inside [-1, 1] and behaves when a proportion is 0 or 1 - in a prior-user cohort
    every person used the drug before.
    """
    n = both + first_only + second_only + neither
    if n <= 0:
        return Estimate(NAN)
    first_yes, first_no = both + first_only, second_only + neither
    second_yes, second_no = both + second_only, first_only + neither
    p1 = first_yes / n
    p2 = second_yes / n
    w1 = wilson(first_yes, n)
    w2 = wilson(second_yes, n)
    if 0 in (first_yes, first_no, second_yes, second_no):
        phi = 0.0
    else:
        cross = both * neither - first_only * second_only
        if cross > n / 2:
            cross = cross - n / 2
        elif cross >= 0:
            cross = 0.0
        phi = cross / math.sqrt(first_yes * first_no * second_yes * second_no)
    down1, up1 = p1 - w1.ci_low, w1.ci_high - p1
    down2, up2 = p2 - w2.ci_low, w2.ci_high - p2
    estimate = p1 - p2
    lower = estimate - math.sqrt(max(0.0, down1**2 + up2**2 - 2 * phi * down1 * up2))
    upper = estimate + math.sqrt(max(0.0, up1**2 + down2**2 - 2 * phi * up1 * down2))
    return Estimate(estimate, lower, upper)


def mover_difference(first: Estimate, second: Estimate) -> Estimate:
    """first - second for two independent estimates, interval by MOVER (square-and-add).

    Zou & Donner's method of variance estimates recovery: each limit of the difference adds
    in quadrature the distances from each estimate to its own relevant limit, so asymmetric
    intervals (Newcombe, Wilson) stay asymmetric.
    """
    estimate = first.estimate - second.estimate
    values = (first.ci_low, first.ci_high, second.ci_low, second.ci_high, estimate)
    if not all(math.isfinite(v) for v in values):
        return Estimate(estimate)
    lower = estimate - math.hypot(first.estimate - first.ci_low, second.ci_high - second.estimate)
    upper = estimate + math.hypot(first.ci_high - first.estimate, second.estimate - second.ci_low)
    return Estimate(estimate, lower, upper)


def ratio_of_means(numerator: np.ndarray, denominator: np.ndarray) -> Estimate:
    """mean(numerator) / mean(denominator) of paired per-person values, delta-method interval.

    With R = mean(u) / mean(x), the linearised residuals z_i = u_i - R x_i give
    se(R) = sd(z) / (sqrt(n) |mean(x)|); the interval uses t with n - 1 degrees of freedom.
    NaN when mean(denominator) is 0.
    """
    u = np.asarray(numerator, dtype=float)
    x = np.asarray(denominator, dtype=float)
    n = u.size
    if n == 0:
        return Estimate(NAN)
    mean_x = float(x.mean())
    if mean_x == 0:
        return Estimate(NAN)
    ratio = float(u.mean()) / mean_x
    if n < 2:
        return Estimate(ratio)
    z = u - ratio * x
    se = float(z.std(ddof=1) / (math.sqrt(n) * abs(mean_x)))
    return _t_estimate(ratio, se, n - 1, abs(ratio))


@dataclass(frozen=True)
class OlsFit:
    """Ordinary least squares: one Estimate per design column, classical (iid) errors."""

    estimates: tuple[Estimate, ...]
    n: int
    df_resid: int


def ols(y: np.ndarray, design: np.ndarray) -> OlsFit:
    """Fit y = X b + e by least squares; t intervals and p values with n - p degrees of freedom.

    Estimates are NaN when the design is rank deficient; intervals are NaN when there are no
    residual degrees of freedom or the fit is exact (a constant series).
    """
    y = np.asarray(y, dtype=float)
    x = np.asarray(design, dtype=float)
    n, p = x.shape
    if n == 0 or np.linalg.matrix_rank(x) < p:
        return OlsFit(tuple(Estimate(NAN) for _ in range(p)), n, n - p)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    df = n - p
    if df <= 0:
        return OlsFit(tuple(Estimate(float(b)) for b in beta), n, df)
    residuals = y - x @ beta
    sigma2 = float(residuals @ residuals) / df
    covariance = sigma2 * np.linalg.inv(x.T @ x)
    scale = float(np.abs(y).max()) if y.size else 0.0
    estimates = tuple(
        _t_estimate(float(beta[i]), math.sqrt(max(0.0, float(covariance[i, i]))), df, scale)
        for i in range(p)
    )
    return OlsFit(estimates, n, df)
