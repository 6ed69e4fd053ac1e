"""The report: a registry of sections over a run directory's tables.

A section is a function `(run: RunTables, figures: Figures) -> Fragment | None`. It reads
the tables it needs from `run` (each loaded once, `None` when absent) and returns an HTML
fragment and a markdown fragment, or `None` when its inputs are absent — then the section
is left out. Sections are registered with `@section(id, title, order)`; the page lists them
by `order`. Other stages add theirs in a module `biasamp.<stage>.report_sections`, which
`build_report` imports when it exists (see docs/report.md).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from biasamp.errors import BiasampError
from biasamp.report.render import Figures, esc, md_esc

#: Display order of the study's conditions; others follow in their order of appearance.
CONDITION_ORDER = ("keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators")


@dataclass
class Fragment:
    """What a section returns: the same content as HTML and as markdown."""

    html: str
    markdown: str


SectionFn = Callable[["RunTables", Figures], "Fragment | None"]


@dataclass(frozen=True)
class SectionSpec:
    id: str
    title: str
    order: float
    fn: SectionFn


_SECTIONS: dict[str, SectionSpec] = {}


def section(id: str, title: str, order: float) -> Callable[[SectionFn], SectionFn]:
    """Register a report section (a decorator). `id` is unique and becomes the HTML anchor."""

    def add(fn: SectionFn) -> SectionFn:
        old = _SECTIONS.get(id)
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"report section {id!r} is registered twice")
        _SECTIONS[id] = SectionSpec(id, title, order, fn)
        return fn

    return add


def remove_section(id: str) -> None:
    """Unregister a section (no error when absent)."""
    _SECTIONS.pop(id, None)


def sections() -> list[SectionSpec]:
    """Registered sections in page order (built-in ones and those other stages add)."""
    _discover()
    return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.id))


_discovered = False


def _discover() -> None:
    """Import built-in sections, then each stage's `report_sections` module where one exists.

    A stage whose module fails to import is reported with a warning and left out, so one
    broken stage does not take the whole report down."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import warnings

    import biasamp

    importlib.import_module("biasamp.report.sections")
    for mod in sorted(pkgutil.iter_modules(biasamp.__path__), key=lambda m: m.name):
        if not mod.ispkg or mod.name == "report":
            continue
        if not any((Path(p) / mod.name / "report_sections.py").is_file() for p in biasamp.__path__):
            continue
        name = f"biasamp.{mod.name}.report_sections"
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a broken stage must not break every report
            warnings.warn(f"report sections of {name} not loaded: {type(e).__name__}: {e}", stacklevel=2)


def condition_sort_key(order: Iterable[str] = CONDITION_ORDER) -> Callable[[str], tuple[int, int]]:
    pos = {c: i for i, c in enumerate(order)}
    seen: dict[str, int] = {}

    def key(c: str) -> tuple[int, int]:
        if c in pos:
            return (pos[c], 0)
        return (len(pos), seen.setdefault(c, len(seen)))

    return key


def order_conditions(conditions: Iterable[str]) -> list[str]:
    conds = list(dict.fromkeys(conditions))
    return sorted(conds, key=condition_sort_key())


class RunTables:
    """A run directory's tables, each read once on first use; `None` when absent.

    `parquet(name)` reads `<run_dir>/<name>.parquet`, `json(name)` reads `<run_dir>/<name>.json`.
    An unreadable file is a `BiasampError` naming it.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._cache: dict[str, Any] = {}

    def parquet(self, name: str) -> pl.DataFrame | None:
        key = f"{name}.parquet"
        if key not in self._cache:
            p = self.run_dir / key
            if not p.exists():
                self._cache[key] = None
            else:
                try:
                    self._cache[key] = pl.read_parquet(p)
                except Exception as e:
                    raise BiasampError(f"cannot read {p}: {type(e).__name__}: {e}", hint="re-run the stage that writes it") from None
        return self._cache[key]

    def json(self, name: str) -> dict | None:
        key = f"{name}.json"
        if key not in self._cache:
            p = self.run_dir / key
            if not p.exists():
                self._cache[key] = None
            else:
                try:
                    self._cache[key] = json.loads(p.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as e:
                    raise BiasampError(f"cannot read {p}: {e}", hint="re-run the stage that writes it") from None
        return self._cache[key]

    @property
    def amplification(self) -> pl.DataFrame | None:
        return self.parquet("amplification")

    @property
    def by_group(self) -> pl.DataFrame | None:
        return self.parquet("by_group")

    @property
    def exclusions(self) -> pl.DataFrame | None:
        return self.parquet("exclusions")

    @property
    def summary(self) -> dict | None:
        return self.json("summary")

    @property
    def truth(self) -> pl.DataFrame | None:
        return self.parquet("truth")

    @property
    def simulation(self) -> dict | None:
        return self.json("simulation")

    def conditions(self) -> list[str]:
        """Conditions present, in display order."""
        found: list[str] = []
        amp = self.amplification
        if amp is not None and "condition" in amp.columns:
            found += amp["condition"].unique(maintain_order=True).to_list()
        summ = self.summary or {}
        found += list((summ.get("conditions") or {}).keys())
        return order_conditions(found)

    @property
    def simulated(self) -> bool:
        """Whether the data were simulated: a simulation.json or truth table in the run, a
        `simulated` flag in summary.json, a `simulated` column in the observations, or an
        input named in summary.json's settings that sits beside a simulation.json."""
        if "simulated" in self._cache:
            return self._cache["simulated"]
        self._cache["simulated"] = self._detect_simulated()
        return self._cache["simulated"]

    def _detect_simulated(self) -> bool:
        if (self.run_dir / "simulation.json").exists():
            return True
        summ = self.summary or {}
        settings = summ.get("settings") or {}
        if summ.get("simulated") or (isinstance(settings, dict) and settings.get("simulated")):
            return True
        obs = self.run_dir / "observations.parquet"
        if obs.exists():
            try:
                names = pl.read_parquet_schema(obs)
            except Exception:
                names = {}
            if "simulated" in names:
                col = pl.read_parquet(obs, columns=["simulated"])["simulated"]
                if col.cast(pl.Boolean, strict=False).any():
                    return True
        if isinstance(settings, dict):
            for v in _strings(settings):
                if len(v) < 4096 and ("/" in v or v.endswith((".parquet", ".csv"))):
                    p = Path(v)
                    if not p.is_absolute():
                        p = self.run_dir / p if not p.exists() else p
                    try:
                        if (p.parent / "simulation.json").exists() or (p.is_dir() and (p / "simulation.json").exists()):
                            return True
                    except OSError:
                        continue
        return False


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


@dataclass
class ReportPaths:
    """Where `build_report` wrote the report."""

    out_dir: Path
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)


def _css() -> str:
    return resources.files("biasamp.report").joinpath("style.css").read_text(encoding="utf-8")


SIMULATED_NOTICE = (
    "These data are simulated. They were drawn by biasamp's simulator from a planted truth; "
    "they describe no real model and no real training set."
)


def build_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    title: str | None = None,
    only: Iterable[str] | None = None,
    dpi: int = 110,
) -> ReportPaths:
    """Write `index.html` (self-contained: inline CSS, figures as base64 PNG, no script, no
    network) and `report.md` (figures as PNG files beside it) for the run in `run_dir`.

    `out_dir` defaults to `<run_dir>/report`. `only` restricts the page to the named
    section ids. Returns the paths written.
    """
    from biasamp.store import atomic_write_text

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BiasampError(f"run directory not found: {run_dir}", hint="pass the folder `biasamp measure --out` wrote")
    run = RunTables(run_dir)
    if run.amplification is None and run.summary is None:
        raise BiasampError(
            f"{run_dir} holds neither amplification.parquet nor summary.json",
            hint="run `biasamp measure ... --out DIR` first, then `biasamp report DIR`",
        )
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = Figures(out, dpi=dpi)
    wanted = set(only) if only is not None else None
    if wanted is not None:
        unknown = sorted(wanted - {s.id for s in sections()})
        if unknown:
            raise BiasampError(
                f"unknown report section(s) {unknown}", hint=f"sections: {', '.join(s.id for s in sections())}"
            )
    done: list[tuple[SectionSpec, Fragment]] = []
    for spec in sections():
        if wanted is not None and spec.id not in wanted:
            continue
        frag = spec.fn(run, figures)
        if frag is not None:
            done.append((spec, frag))

    title = title or f"biasamp report: {run_dir.resolve().name}"
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    simulated = run.simulated
    notice = str((run.summary or {}).get("simulated_note") or SIMULATED_NOTICE)
    ci = ((run.summary or {}).get("settings") or {}).get("ci", 0.95)
    ci_text = f"{100 * ci:g}%" if isinstance(ci, (int, float)) and not isinstance(ci, bool) and 0 < ci < 1 else "95%"
    notice_html = f'<p class="notice" role="alert"><strong>Simulated data.</strong> {esc(notice)}</p>' if simulated else ""
    nav = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s, _ in done)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{f.html}</section>' for s, f in done)
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{_css()}</style></head><body><main>"
        f"<header><h1>{esc(title)}</h1>{notice_html}"
        f'<p class="meta">Run directory: <code>{esc(run_dir)}</code> · written {esc(created)} by biasamp</p>'
        f'<nav><ol>{nav}</ol></nav></header>{body}'
        "<footer><p>Amplification is in percentage points: sign(p_train − 0.5) · (p_gen − p_train), "
        "positive when generated images lean further towards the training majority. "
        f"Intervals are {esc(ci_text)} bootstrap intervals.</p></footer>"
        "</main></body></html>\n"
    )
    md_parts = [f"# {md_esc(title)}"]
    if simulated:
        md_parts.append(f"> **Simulated data.** {md_esc(notice)}")
    md_parts.append(f"Run directory: `{str(run_dir).replace('`', '')}` · written {created} by biasamp")
    for s, f in done:
        md_parts.append(f"## {md_esc(s.title)}\n\n{f.markdown}")
    markdown = "\n\n".join(md_parts) + "\n"
    html_path = atomic_write_text(page, out / "index.html")
    md_path = atomic_write_text(markdown, out / "report.md")
    return ReportPaths(out, html_path, md_path, list(figures.paths), [s.id for s, _ in done])
