"""Vectorised two-stage cluster bootstrap over group counts.

For one side (training or generated images) of one (condition, occupation) unit with G
groups (clusters) holding n_g confident images of which f_g are perceived female, one
bootstrap replicate

1. draws G groups with replacement, and
2. for each drawn group redraws its n_g images with replacement, i.e. a female count
   ~ Binomial(n_g, f_g / n_g),

and returns F* = Σ female counts and N* = Σ n_g over the drawn groups. Each of the G
draws is one draw from the equal-weight mixture of the groups' binomials, so it is done
with one uniform number by inverting the mixture's cumulative distribution, precomputed
once per unit (`MixtureTables`). A unit with one group, or whose groups each hold one
image, reduces exactly to a single Binomial(N, F / N) draw (the parametric bootstrap
used for counts without groups).

Replicate r takes all its uniform numbers from its own generator, seeded by the r-th
child of `numpy.random.SeedSequence(seed)`: results do not depend on how replicates are
chunked. Within a chunk, lookups run cell by cell over all replicates (the transposed
layout), which keeps each cell's table in cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, xlog1py, xlogy
from scipy.stats import binom

#: probability mass left outside a binomial's tabulated support (folded into its ends)
TAIL = 1e-15
#: guide-table buckets per tabulated value (more buckets, fewer steps after the jump)
GUIDE = 2


@dataclass
class SideSpec:
    """Group counts of one side, arranged by unit.

    `unit_of_group[i]` is the unit of group i (non-decreasing), `n[i]` its confident
    images (> 0) and `f[i]` its female ones.
    """

    n_units: int
    unit_of_group: np.ndarray
    n: np.ndarray
    f: np.ndarray


def _segmented_binomial_cdf(k, n, p, comp, comp_start, lo) -> np.ndarray:
    """Binomial cdf at k for consecutive segments (one per component), from log-space
    pmfs summed within each segment, plus the mass below the segment's first value."""
    nc, pc = n[comp].astype(float), p[comp]
    with np.errstate(divide="ignore", invalid="ignore"):
        logpmf = (
            gammaln(nc + 1) - gammaln(k + 1.0) - gammaln(nc - k + 1)
            + xlogy(k, pc) + xlog1py(nc - k, -pc)
        )  # fmt: skip
    pmf = np.exp(logpmf)
    c = np.cumsum(pmf)
    before = np.where(comp_start > 0, c[np.maximum(comp_start - 1, 0)], 0.0)
    below = np.where(lo > 0, binom.cdf(lo - 1, n, p), 0.0)
    return np.minimum(c - before[comp] + below[comp], 1.0)


class MixtureTables:
    """Inverse-CDF tables, one cell per unit: the equal-weight mixture of its groups'
    binomials (or one pooled binomial when the groups are singletons)."""

    def __init__(self, spec: SideSpec):
        U = spec.n_units
        ug = np.asarray(spec.unit_of_group, dtype=np.int64)
        n = np.asarray(spec.n, dtype=np.int64)
        f = np.asarray(spec.f, dtype=np.int64)
        if len(ug) and (np.any(n <= 0) or np.any(np.diff(ug) < 0)):
            raise ValueError("groups must be sorted by unit and hold at least one image")
        G = np.bincount(ug, minlength=U)
        if np.any(G == 0):
            raise ValueError("every unit needs at least one group with a confident image")
        max_n = np.zeros(U, dtype=np.int64)
        np.maximum.at(max_n, ug, n)
        singleton = (max_n == 1) & (G > 1)
        # collapse singleton-group units into one pooled group
        keep = ~singleton[ug]
        pooled_units = np.flatnonzero(singleton)
        N_unit = np.bincount(ug, weights=n, minlength=U).astype(np.int64)
        F_unit = np.bincount(ug, weights=f, minlength=U).astype(np.int64)
        g_unit = np.concatenate([ug[keep], pooled_units])
        g_n = np.concatenate([n[keep], N_unit[pooled_units]])
        g_f = np.concatenate([f[keep], F_unit[pooled_units]])
        order = np.argsort(g_unit, kind="stable")
        g_unit, g_n, g_f = g_unit[order], g_n[order], g_f[order]
        self.n_units = U
        self.singleton = singleton
        self.groups_per_unit = np.bincount(g_unit, minlength=U)  # mixture components per cell
        # position of each original group inside its unit's mixture (for by-group draws)
        first = np.zeros(U, dtype=np.int64)
        first[1:] = np.cumsum(G)[:-1]
        self.group_local = np.arange(len(ug)) - first[ug]
        self.group_unit = ug

        # supports: [lo, hi] per component, holding all but TAIL of the mass
        p = g_f / g_n
        lo = np.where((p > 0) & (p < 1), binom.ppf(TAIL, g_n, p), g_f).astype(np.int64)
        hi = np.where((p > 0) & (p < 1), binom.isf(TAIL, g_n, p), g_f).astype(np.int64)
        lo = np.clip(lo, 0, g_n)
        hi = np.clip(np.maximum(hi, lo), 0, g_n)
        length = hi - lo + 1
        comp = np.repeat(np.arange(len(g_n)), length)
        comp_start = np.zeros(len(g_n), dtype=np.int64)
        comp_start[1:] = np.cumsum(length)[:-1]
        k = lo[comp] + (np.arange(length.sum()) - comp_start[comp])
        cdf = _segmented_binomial_cdf(k, g_n, p, comp, comp_start, lo)
        cdf[comp_start + length - 1] = 1.0  # fold the upper tail into the last value
        # component index within its cell, then the mixture's cdf: (j + cdf_j) / G
        cell_first_comp = np.zeros(U, dtype=np.int64)
        cell_first_comp[1:] = np.cumsum(self.groups_per_unit)[:-1]
        j = np.arange(len(g_n)) - cell_first_comp[g_unit]
        Gc = self.groups_per_unit[g_unit].astype(float)
        mix = (j[comp] + cdf) / Gc[comp]
        cell = g_unit[comp]
        cell_len = np.bincount(cell, minlength=U)
        cell_start = np.zeros(U, dtype=np.int64)
        cell_start[1:] = np.cumsum(cell_len)[:-1]
        mix[cell_start + cell_len - 1] = 1.0
        self.cdf = mix
        self.k = k.astype(np.int64)
        self.n = g_n[comp].astype(np.int64)
        # guide table: M_c = GUIDE · L_c buckets per cell; guide[m] is the first i of the
        # cell with cdf[i] > m / M_c, so a lookup starts there and rarely moves on
        M = GUIDE * cell_len
        guide_start = np.zeros(U, dtype=np.int64)
        guide_start[1:] = np.cumsum(M)[:-1]
        keys = cell.astype(float) + mix
        gcell = np.repeat(np.arange(U), M)
        gq = (np.arange(M.sum()) - guide_start[gcell]) / M[gcell]
        guide = np.searchsorted(keys, gcell + gq, side="right")
        guide = np.clip(guide, cell_start[gcell], (cell_start + cell_len - 1)[gcell])
        # exact fix-up with the cell's own values (the global keys round at ~1e-12)
        while True:
            back = (guide > cell_start[gcell]) & (mix[np.maximum(guide - 1, 0)] > gq)
            if not back.any():
                break
            guide[back] -= 1
        while True:
            fwd = mix[guide] <= gq
            if not fwd.any():
                break
            guide[fwd] += 1
        small = len(mix) < 2**31 and M.sum() < 2**31
        self.guide = guide.astype(np.int32 if small else np.int64)
        self.cell_start = cell_start
        self.guide_start = guide_start
        self.M = M.astype(float)
        self.k = self.k.astype(np.int32)
        self.n = self.n.astype(np.int32)
        #: k and n packed in one int64 (n in the high 32 bits): sums of packed values
        #: are the packed sums, so one reduction gives both F* and N*
        self.packed = self.k.astype(np.int64) + (self.n.astype(np.int64) << 32)

    # positions drawn per replicate: G for a mixture cell, 1 for a pooled singleton cell
    @property
    def positions_per_unit(self) -> np.ndarray:
        return np.where(self.singleton, 1, self.groups_per_unit)

    def lookup(self, cells: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Indices into the tables for uniforms `u` of shape (len(cells), R): row j draws
        from cell `cells[j]` (the value whose mixture cdf is the first above u)."""
        cells = np.asarray(cells)
        pos = (u * self.M[cells][:, None]).astype(self.guide.dtype)
        pos += self.guide_start[cells][:, None].astype(self.guide.dtype)
        i = self.guide[pos].ravel()
        uf = u.ravel()
        cdf = self.cdf
        need = np.flatnonzero(cdf[i] <= uf)
        while need.size:
            i[need] += 1
            need = need[cdf[i[need]] <= uf[need]]
        return i


class SideSampler:
    """Draws (F*, N*) per unit for many replicates, and per-group female counts."""

    def __init__(self, spec: SideSpec, *, by_group: bool = False, by_group_mask: np.ndarray | None = None):
        self.tables = MixtureTables(spec)
        ppu = self.tables.positions_per_unit
        self.n_positions = int(ppu.sum())
        self.position_cell = np.repeat(np.arange(spec.n_units), ppu)
        from scipy.sparse import csr_matrix

        #: sums positions into units (one sparse product instead of a reduceat)
        self.sum_positions = csr_matrix(
            (np.ones(self.n_positions, dtype=np.int64), (self.position_cell, np.arange(self.n_positions))),
            shape=(spec.n_units, self.n_positions),
        )
        self.by_group = by_group
        if by_group:
            # groups of units whose groups are not singletons; draw = mixture at (j + u) / G
            ok = ~self.tables.singleton[self.tables.group_unit]
            if by_group_mask is not None:  # only these groups are broken out
                ok &= np.asarray(by_group_mask, dtype=bool)
            self.bg_index = np.flatnonzero(ok)  # which input groups get a by-group draw
            self.bg_cell = self.tables.group_unit[ok]
            self.bg_local = self.tables.group_local[ok].astype(float)
            self.bg_G = self.tables.groups_per_unit[self.bg_cell].astype(float)
            # largest value below the component's upper end (j + 1) / G: j + u can round up to j + 1
            self.bg_top = np.nextafter((self.bg_local + 1.0) / self.bg_G, 0.0)
        else:
            self.bg_index = np.zeros(0, dtype=np.int64)
        self.n_uniforms = self.n_positions + len(self.bg_index)

    def draw(self, uT: np.ndarray):
        """uT: (n_uniforms, R) uniforms, cell-major. Returns F (U, R), N (U, R) and, with
        by_group, the per-group female counts (n_bg, R)."""
        R = uT.shape[1]
        t = self.tables
        idx = t.lookup(self.position_cell, uT[: self.n_positions])
        packed = self.sum_positions @ t.packed[idx].reshape(self.n_positions, R)
        F = packed & 0xFFFFFFFF
        N = packed >> 32
        Fg = None
        if self.by_group and len(self.bg_index):
            ub = uT[self.n_positions :]
            ub = np.minimum((self.bg_local[:, None] + ub) / self.bg_G[:, None], self.bg_top[:, None])
            gidx = t.lookup(self.bg_cell, ub)
            Fg = t.k[gidx].reshape(len(self.bg_index), R)
        return F, N, Fg


def replicate_seeds(seed: int, n_boot: int) -> list[np.random.SeedSequence]:
    """One independent seed per bootstrap replicate."""
    return np.random.SeedSequence(seed).spawn(n_boot)


def percentile_interval(x: np.ndarray, ci: float, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval at level ci along `axis`."""
    a = (1.0 - ci) / 2.0
    q = np.quantile(x, [a, 1.0 - a], axis=axis)
    return q[0], q[1]


def integer_percentile_interval(F: np.ndarray, n: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """`percentile_interval` along axis 1 for integer rows, row b in [0, n[b]], by counting
    (a histogram per row) instead of selection; equal to numpy's linear-interpolation
    quantiles."""
    F = np.asarray(F)
    B, R = F.shape
    size = np.asarray(n, dtype=np.int64) + 1
    offset = np.zeros(B, dtype=np.int64)
    offset[1:] = np.cumsum(size)[:-1]
    hist = np.bincount((F.astype(np.int64) + offset[:, None]).ravel(), minlength=int(size.sum()))
    cum = np.cumsum(hist)
    before = np.where(offset > 0, cum[np.maximum(offset - 1, 0)], 0)

    def order_stat(k: int) -> np.ndarray:  # k-th smallest (0-based) of each row
        return np.searchsorted(cum, before + k, side="right") - offset

    out = []
    for q in ((1.0 - ci) / 2.0, 1.0 - (1.0 - ci) / 2.0):
        h = q * (R - 1)
        k0 = int(np.floor(h))
        lo = order_stat(k0).astype(float)
        hi = order_stat(min(k0 + 1, R - 1)).astype(float)
        out.append(lo + (h - k0) * (hi - lo))
    return out[0], out[1]


def bootstrap_p_value(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """Two-sided bootstrap p-value for "d = 0" by inverting percentile intervals:
    p = min(1, 2 · min(#(d* ≤ 0) + 1, #(d* ≥ 0) + 1) / (B + 1))."""
    B = d.shape[axis]
    le = np.count_nonzero(d <= 0, axis=axis)
    ge = np.count_nonzero(d >= 0, axis=axis)
    return np.minimum(1.0, 2.0 * (np.minimum(le, ge) + 1.0) / (B + 1.0))
