"""How many images per occupation: for a target CI half-width, or a given power.

The estimate is d = p_gen − p_train (amplification is ±100·d), with variance

    Var(d) = deff · (p_t(1 − p_t) / n_t + p_g(1 − p_g) / n_g)

(deff: the design effect of clustering, 1 for independent images). With z = z_{1−(1−ci)/2}:

- half-width h (in percentage points): z · sqrt(Var(d)) ≤ h/100; with n_t = n_g = n,
  n = deff · z² · (p_t q_t + p_g q_g) / (h/100)².
- power 1 − β to detect an amplification δ (percentage points) with a two-sided Wald
  test at level α: n = deff · (z_{1−α/2} + z_{1−β})² · (p_t q_t + p_g q_g) / (δ/100)²,
  where p_g = p_t + sign(p_t − 0.5) · δ/100 (p_g moves towards the training majority).

With a fixed training sample (`n_train`), the same equations are solved for n_g alone.
For the mean over K occupations with the same shares, Var is divided by K. Confident
images are the ones counted: divide by `keep_rate` (the share of images that pass the
face filter and are classified confidently) for the images to produce.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import polars as pl
from scipy.stats import norm

from biasamp.errors import BiasampError


@dataclass(frozen=True)
class Plan:
    mode: str  # "half_width" or "power"
    n_gen: int  # confident generated images needed per occupation
    n_train: int  # confident training images per occupation (given or needed)
    images_gen: int  # generated images to produce (n_gen / keep_rate)
    images_train: int  # training images to classify (n_train / keep_rate)
    p_train: float
    p_gen: float
    target: float  # half-width (pp) or power
    achieved: float  # half-width (pp) or power reached with the rounded sizes
    formula: str
    settings: dict

    def to_frame(self) -> pl.DataFrame:
        d = asdict(self)
        d.pop("settings")
        return pl.DataFrame([d])


def _check_share(name: str, v: float) -> None:
    if not (0.0 <= v <= 1.0):
        raise BiasampError(f"{name} must be a share in [0, 1], got {v!r}")


def plan_sample_size(
    *,
    half_width: float | None = None,
    amplification: float | None = None,
    p_train: float = 0.5,
    p_gen: float | None = None,
    power: float = 0.8,
    alpha: float = 0.05,
    ci: float = 0.95,
    n_train: int | None = None,
    design_effect: float = 1.0,
    keep_rate: float = 1.0,
    n_occupations: int = 1,
) -> Plan:
    """Images per occupation for a CI half-width (percentage points) or to detect an
    amplification (percentage points) with the given power. Give exactly one target."""
    if (half_width is None) == (amplification is None):
        raise BiasampError("give exactly one target: half_width (pp) or amplification (pp)")
    _check_share("p_train", p_train)
    if design_effect < 1.0 and design_effect <= 0:
        raise BiasampError(f"design_effect must be positive, got {design_effect}")
    if not (0.0 < keep_rate <= 1.0):
        raise BiasampError(f"keep_rate must be in (0, 1], got {keep_rate}")
    if n_occupations < 1:
        raise BiasampError(f"n_occupations must be >= 1, got {n_occupations}")
    if n_train is not None and n_train < 1:
        raise BiasampError(f"n_train must be >= 1, got {n_train}")
    settings = dict(
        half_width=half_width, amplification=amplification, p_train=p_train, p_gen=p_gen, power=power,
        alpha=alpha, ci=ci, n_train=n_train, design_effect=design_effect, keep_rate=keep_rate,
        n_occupations=n_occupations,
    )  # fmt: skip
    qt = p_train * (1 - p_train)
    if half_width is not None:
        if half_width <= 0:
            raise BiasampError(f"half_width must be positive (percentage points), got {half_width}")
        if not (0.0 < ci < 1.0):
            raise BiasampError(f"ci must be in (0, 1), got {ci}")
        pg = p_train if p_gen is None else p_gen
        _check_share("p_gen", pg)
        z = norm.ppf(1 - (1 - ci) / 2)
        budget = (half_width / 100.0 / z) ** 2 * n_occupations / design_effect  # allowed Var per occupation / deff
        formula = "n = deff · z² · (p_t q_t + p_g q_g) / (K · h²)"
        mode, target = "half_width", half_width
    else:
        if amplification == 0:
            raise BiasampError("amplification to detect must be non-zero (percentage points)")
        if not (0.0 < power < 1.0) or not (0.0 < alpha < 1.0):
            raise BiasampError("power and alpha must be in (0, 1)")
        s = math.copysign(1.0, p_train - 0.5) if p_train != 0.5 else 1.0
        pg = p_train + s * amplification / 100.0 if p_gen is None else p_gen
        if not (0.0 <= pg <= 1.0):
            raise BiasampError(
                f"p_train {p_train} moved by {amplification} points gives p_gen {pg:.3f}, outside [0, 1]",
                hint="choose a smaller amplification or another p_train",
            )
        z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
        budget = ((pg - p_train) / z) ** 2 * n_occupations / design_effect
        formula = "n = deff · (z_{1-α/2} + z_{1-β})² · (p_t q_t + p_g q_g) / (K · δ²)"
        mode, target = "power", power
    qg = pg * (1 - pg)
    if n_train is None:
        n = math.ceil((qt + qg) / budget - 1e-9) if qt + qg > 0 else 1
        n = max(n, 1)
        nt, ngen = n, n
    else:
        rest = budget - qt / n_train
        if rest <= 0:
            raise BiasampError(
                f"with {n_train} training images per occupation the target cannot be reached "
                "however many images are generated",
                hint="use more training images, or relax the target",
            )
        nt, ngen = int(n_train), max(1, math.ceil(qg / rest - 1e-9)) if qg > 0 else 1
    var = design_effect * (qt / nt + qg / ngen) / n_occupations
    if mode == "half_width":
        achieved = 100.0 * norm.ppf(1 - (1 - ci) / 2) * math.sqrt(var)
    else:
        achieved = float(norm.cdf(abs(pg - p_train) / math.sqrt(var) - norm.ppf(1 - alpha / 2))) if var > 0 else 1.0
    return Plan(
        mode=mode,
        n_gen=int(ngen),
        n_train=int(nt),
        images_gen=math.ceil(ngen / keep_rate),
        images_train=math.ceil(nt / keep_rate),
        p_train=float(p_train),
        p_gen=float(pg),
        target=float(target),
        achieved=float(achieved),
        formula=formula,
        settings=settings,
    )
