"""Classifier-error correction (Rogan–Gladen) with the validation set's uncertainty.

A gender classifier that calls a truly-female-presenting image `female` with probability
`sensitivity` (Se) and a truly-male-presenting image `male` with probability `specificity`
(Sp) reports the share p_obs = Se · π + (1 − Sp) · (1 − π) when the true share is π.
Rogan & Gladen (1978) invert it:

    π = (p_obs + Sp − 1) / (Se + Sp − 1),   clipped to [0, 1].

When Se and Sp come from a validation set (n_pos truly female, n_neg truly male images),
each bootstrap replicate draws Se ~ Beta(TP + 1, FN + 1) and Sp ~ Beta(TN + 1, FP + 1)
(their posteriors under a uniform prior), so the CIs carry the validation set's
uncertainty as well as the sampling of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError
from biasamp.tables import LABELS, LABELS_CONFIDENT, read_table


@dataclass(frozen=True)
class Correction:
    """Sensitivity/specificity of the 'female' call, and optionally the validation counts."""

    sensitivity: float
    specificity: float
    n_pos: float | None = None  # validation images truly female (confident predictions)
    n_neg: float | None = None  # validation images truly male (confident predictions)
    origin: str = "values"
    n_abstained: int = 0  # validation images whose prediction was not confident (unused)

    def __post_init__(self):
        for name in ("sensitivity", "specificity"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and 0.0 <= v <= 1.0):
                raise BiasampError(f"{name} must be a number in [0, 1], got {v!r}")
        if self.sensitivity + self.specificity <= 1.0:
            raise BiasampError(
                f"sensitivity + specificity = {self.sensitivity + self.specificity:.3f} is not above 1: "
                "the classifier is no better than chance and cannot be corrected for",
                hint="check that sensitivity/specificity refer to the 'female' call, or the validation labels",
            )
        for name in ("n_pos", "n_neg"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise BiasampError(f"{name} must be a positive count, got {v!r}")
        if (self.n_pos is None) != (self.n_neg is None):
            raise BiasampError("give both n_pos and n_neg (validation images truly female / truly male), or neither")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_values(
        cls,
        sens_female: float,
        spec_female: float,
        n_pos: float | None = None,
        n_neg: float | None = None,
    ) -> Correction:
        """Known sensitivity/specificity of the 'female' call; with n_pos/n_neg (the
        validation sizes they were measured on) their uncertainty enters the CIs."""
        return cls(float(sens_female), float(spec_female), n_pos, n_neg, origin="values")

    @classmethod
    def from_validation(cls, df) -> Correction:
        """From a labelled validation table: `label` (the classifier's prediction, any
        label of the labels table) and `reference` (the true female/male). Only confident
        predictions (female/male) are used; the others are counted as abstentions."""
        where = ""
        if isinstance(df, (str, Path)):
            where = f" in {df}"
            df = read_table(df)
        elif not isinstance(df, pl.DataFrame):
            try:
                df = pl.from_pandas(df)
            except Exception:
                raise BiasampError(f"cannot read a validation table from {type(df).__name__}") from None
        missing = [c for c in ("label", "reference") if c not in df.columns]
        if missing:
            raise BiasampError(
                f"validation table{where} is missing column(s) {', '.join(missing)}; "
                f"columns found: {', '.join(df.columns)}",
                hint="a validation table needs 'label' (prediction) and 'reference' (true female/male)",
            )
        df = df.with_columns(pl.col("label").cast(pl.Utf8), pl.col("reference").cast(pl.Utf8)).with_row_index("_row", offset=1)
        bad = df.filter(pl.col("label").is_null() | ~pl.col("label").is_in(list(LABELS)))
        if len(bad):
            raise BiasampError(
                f"validation table{where}: unknown label {bad['label'][0]!r} at data row {bad['_row'][0]} (counted from 1)",
                hint=f"allowed labels: {', '.join(LABELS)}",
            )
        bad = df.filter(pl.col("reference").is_null() | ~pl.col("reference").is_in(list(LABELS_CONFIDENT)))
        if len(bad):
            raise BiasampError(
                f"validation table{where}: reference must be female or male, found "
                f"{bad['reference'][0]!r} at data row {bad['_row'][0]} (counted from 1)",
                hint="drop rows whose true label is unknown",
            )
        conf = df.filter(pl.col("label").is_in(list(LABELS_CONFIDENT)))
        tp = int(((conf["label"] == "female") & (conf["reference"] == "female")).sum())
        fn = int(((conf["label"] == "male") & (conf["reference"] == "female")).sum())
        tn = int(((conf["label"] == "male") & (conf["reference"] == "male")).sum())
        fp = int(((conf["label"] == "female") & (conf["reference"] == "male")).sum())
        if tp + fn == 0 or tn + fp == 0:
            raise BiasampError(
                f"validation table{where} needs confident predictions for both truly female "
                f"({tp + fn}) and truly male ({tn + fp}) images",
                hint="label more validation images",
            )
        return cls(
            tp / (tp + fn),
            tn / (tn + fp),
            float(tp + fn),
            float(tn + fp),
            origin="validation",
            n_abstained=len(df) - len(conf),
        )

    # ------------------------------------------------------------------ use
    @property
    def uncertain(self) -> bool:
        return self.n_pos is not None

    def correct(self, p, sensitivity=None, specificity=None):
        """Rogan–Gladen corrected share(s), clipped to [0, 1]. Se/Sp may be arrays that
        broadcast against p (one value per bootstrap replicate)."""
        se = self.sensitivity if sensitivity is None else sensitivity
        sp = self.specificity if specificity is None else specificity
        j = np.maximum(np.asarray(se) + np.asarray(sp) - 1.0, 1e-9)
        return np.clip((np.asarray(p) + sp - 1.0) / j, 0.0, 1.0)

    def draw(self, rng: np.random.Generator) -> tuple[float, float]:
        """One (Se, Sp) draw from the Beta posteriors (the fixed values if no sizes)."""
        if not self.uncertain:
            return self.sensitivity, self.specificity
        tp = self.sensitivity * self.n_pos
        tn = self.specificity * self.n_neg
        se = rng.beta(tp + 1.0, self.n_pos - tp + 1.0)
        sp = rng.beta(tn + 1.0, self.n_neg - tn + 1.0)
        return float(se), float(sp)

    def to_dict(self) -> dict:
        return {
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "origin": self.origin,
            "n_abstained": self.n_abstained,
            "method": "Rogan-Gladen, Beta(TP+1, FN+1) / Beta(TN+1, FP+1) draws per replicate"
            if self.uncertain
            else "Rogan-Gladen, fixed sensitivity/specificity",
        }
