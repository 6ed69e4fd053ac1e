"""Building blocks for report sections: escaping, tables and figures in HTML and markdown.

Every piece of text that comes from data (occupation names, captions, group names,
settings) goes through `esc` (HTML) or `md_esc` (markdown) before it reaches a page.
Figures are drawn with matplotlib's Agg canvas (no pyplot, no display) and embedded as
base64 PNG in the HTML and written as PNG files beside the markdown.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


_MD_SPECIAL = re.compile(r"([\\`*_|#])")


def md_esc(value: Any) -> str:
    """Escape text for markdown (tables included): HTML is neutralised as entities and
    markdown's own markup characters are backslash-escaped; newlines become spaces."""
    s = "" if value is None else str(value)
    s = s.replace("\r", " ").replace("\n", " ")
    s = html.escape(s, quote=False)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    if "](" in s:  # would form a link
        s = s.replace("[", "\\[").replace("]", "\\]")
    return s


def mpl_text(value: Any) -> str:
    """Text safe for matplotlib labels: `$` would start mathtext."""
    return ("" if value is None else str(value)).replace("$", r"\$")


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt_num(v: Any, digits: int = 1, *, signed: bool = False) -> str:
    if _is_missing(v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:+d}" if signed else str(v)
    if isinstance(v, float):
        return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return str(v)


def fmt_ci(est: Any, lo: Any, hi: Any, digits: int = 1, *, signed: bool = True) -> str:
    """'+6.1 [4.0, 8.2]' (or just the estimate when the interval is missing)."""
    if _is_missing(est):
        return "–"
    s = fmt_num(est, digits, signed=signed)
    if not _is_missing(lo) and not _is_missing(hi):
        s += f" [{fmt_num(lo, digits, signed=signed)}, {fmt_num(hi, digits, signed=signed)}]"
    return s


def fmt_pct(v: Any, digits: int = 1) -> str:
    return "–" if _is_missing(v) else f"{100 * float(v):.{digits}f}%"


def fmt_pct_ci(est: Any, lo: Any, hi: Any, digits: int = 1) -> str:
    if _is_missing(est):
        return "–"
    s = fmt_pct(est, digits)
    if not _is_missing(lo) and not _is_missing(hi):
        s += f" [{fmt_pct(lo, digits)}, {fmt_pct(hi, digits)}]"
    return s


@dataclass
class Table:
    """A table of already-formatted cells; `numeric` columns are right-aligned."""

    header: list[str]
    rows: list[list[Any]]
    numeric: set[int] = field(default_factory=set)
    caption: str | None = None
    css_class: str | None = None

    def html(self) -> str:
        head = "".join(
            f'<th scope="col"{" class=num" if i in self.numeric else ""}>{esc(h)}</th>' for i, h in enumerate(self.header)
        )
        body = []
        for row in self.rows:
            cells = "".join(
                f'<td{" class=num" if i in self.numeric else ""}>{esc(c)}</td>' for i, c in enumerate(row)
            )
            body.append(f"<tr>{cells}</tr>")
        cap = f"<caption>{esc(self.caption)}</caption>" if self.caption else ""
        return (
            f'<div class="table-wrap"><table{f" class={esc(self.css_class)!r}" if self.css_class else ""}>'
            f"{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )

    def markdown(self) -> str:
        if not self.header:
            return ""
        lines = []
        if self.caption:
            lines += [f"*{md_esc(self.caption)}*", ""]
        lines.append("| " + " | ".join(md_esc(h) for h in self.header) + " |")
        lines.append("|" + "|".join("---:" if i in self.numeric else "---" for i in range(len(self.header))) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(md_esc(c) for c in row) + " |")
        return "\n".join(lines)


def frame_table(df: pl.DataFrame, *, digits: int = 3, caption: str | None = None) -> Table:
    """A Polars frame as a Table, numbers rounded."""
    numeric = {i for i, c in enumerate(df.columns) if df.schema[c].is_numeric()}
    rows = [[fmt_num(v, digits) for v in r] for r in df.iter_rows()]
    return Table(list(df.columns), rows, numeric, caption)


def paragraph(text: str) -> tuple[str, str]:
    """A paragraph of plain text as (html, markdown)."""
    return f"<p>{esc(text)}</p>", md_esc(text)


@dataclass
class FigureRef:
    name: str
    html: str
    markdown: str
    path: Path | None


class Figures:
    """Renders matplotlib figures once, as inline base64 PNG for HTML and as PNG files
    beside the markdown. Section functions call `add(draw, name, alt, size)`."""

    def __init__(self, out_dir: Path, *, dpi: int = 110, write_files: bool = True):
        self.out_dir = Path(out_dir)
        self.dpi = dpi
        self.write_files = write_files
        self.paths: list[Path] = []
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "figure"
        cand, k = base, 2
        while cand in self._names:
            cand, k = f"{base}-{k}", k + 1
        self._names.add(cand)
        return cand

    def add(self, draw: Callable[[Any], None], name: str, alt: str, size: tuple[float, float]) -> FigureRef:
        """Draw with `draw(fig)` on a fresh Agg figure of `size` inches; return both embeddings."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            fig.savefig(buf, format="png", dpi=self.dpi)
        data = buf.getvalue()
        fname = self._unique(name) + ".png"
        path = None
        if self.write_files:
            from biasamp.store import atomic_write_bytes

            path = atomic_write_bytes(data, self.out_dir / fname)
            self.paths.append(path)
        b64 = base64.b64encode(data).decode("ascii")
        html_img = f'<figure><img src="data:image/png;base64,{b64}" alt="{esc(alt)}"><figcaption>{esc(alt)}</figcaption></figure>'
        md_img = f"![{md_esc(alt)}]({fname})"
        return FigureRef(fname, html_img, md_img, path)


def details(summary: str, inner_html: str, *, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{inner_html}</details>"


def join_md(parts: Sequence[str]) -> str:
    return "\n\n".join(p for p in parts if p)
