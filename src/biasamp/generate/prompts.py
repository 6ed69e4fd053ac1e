"""Prompts for generation: occupations x templates, or training captions used as prompts.

`build_prompts` returns one row per prompt (before images are drawn from it):
`condition, occupation, group, template, caption_id, text`. `group` is the template id,
or for captions the caption id as a string. `fit_to_tokens` cuts a prompt to a text
encoder's token limit at a word boundary and says whether it did.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError
from biasamp.tables import CAPTION_CONDITION, TEMPLATE_CONDITION  # noqa: F401  (re-exported by biasamp.generate)

PROMPT_SCHEMA = {
    "condition": pl.Utf8,
    "occupation": pl.Utf8,
    "group": pl.Utf8,
    "template": pl.Utf8,
    "caption_id": pl.Int64,
    "text": pl.Utf8,
}


def default_occupations_file() -> Path | None:
    """The bundled occupation list, if this installation has one."""
    from biasamp.vocab import data_path

    p = data_path("occupations.txt")
    return p if p.is_file() else None


def read_occupations_file(path: str | Path) -> list[str]:
    """One occupation per line; blank lines and '#' comments skipped. A line may list
    spelling variants after '|' (the query's format); the first field is the name used."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise BiasampError(f"cannot read occupations file {path}: {e.strerror or e}", hint="pass a file with one occupation per line") from None
    out = []
    for line in lines:
        line = line.split("#", 1)[0].split("|", 1)[0].strip()
        if line:
            out.append(line)
    if not out:
        raise BiasampError(f"occupations file {path} lists no occupation", hint="write one occupation per line")
    return out


def parse_occupations(spec: str | Path | Sequence[str] | None) -> list[str] | None:
    """Occupations from a file path, a comma-separated string or a list (order kept, duplicates dropped)."""
    if spec is None:
        return None
    if isinstance(spec, Path):
        items = read_occupations_file(spec)
    elif isinstance(spec, str):
        p = Path(spec)
        if p.is_file():
            items = read_occupations_file(p)
        elif "," not in spec and (spec.endswith((".txt", ".csv", ".lst")) or "/" in spec or "\\" in spec):
            raise BiasampError(f"occupations file not found: {spec}", hint="pass an existing file, or a comma-separated list like 'nurse,engineer'")
        else:
            items = [s.strip() for s in spec.split(",")]
    else:
        items = [str(s).strip() for s in spec]
    items = [re.sub(r"\s+", " ", s) for s in items if s and s.strip()]
    if not items:
        raise BiasampError("no occupation given", hint="pass --occupations FILE or a comma-separated list")
    return list(dict.fromkeys(items))


def _captions_frame(captions: str | Path | pl.DataFrame, conditions: Sequence[str] | None) -> pl.DataFrame:
    from biasamp.tables import read_table, validate

    if isinstance(captions, pl.DataFrame):
        source = "captions frame"
        df = validate(captions, "selection", source=source)
    else:
        source = str(captions)
        df = read_table(captions, "selection")
    if conditions:
        present = sorted(set(df["condition"].unique().to_list()))
        df = df.filter(pl.col("condition").is_in(list(conditions)))
        if df.is_empty():
            raise BiasampError(
                f"selection table {source} has no rows with condition {', '.join(conditions)}; conditions present: {', '.join(present) or '(none)'}",
                hint="pick the condition whose captions are used as prompts (--caption-condition)",
            )
    bad = df.with_row_index("_row").filter(pl.col("caption_id").is_null() | pl.col("text").is_null() | (pl.col("text").str.strip_chars() == ""))
    if len(bad):
        raise BiasampError(
            f"selection table {source}: rows {bad['_row'].head(5).to_list()} have no caption_id or an empty text, so they cannot be used as prompts",
            hint="drop those rows or fill in caption_id and text",
        )
    df = df.unique(subset=["condition", "occupation", "caption_id"], keep="first", maintain_order=True)
    return df.select(
        pl.col("condition"),
        pl.col("occupation"),
        pl.col("caption_id").cast(pl.Utf8).alias("group"),
        pl.lit(None, dtype=pl.Utf8).alias("template"),
        pl.col("caption_id"),
        pl.col("text").str.strip_chars(),
    )


def build_prompts(
    occupations: str | Path | Sequence[str] | None = None,
    templates: str | Sequence[str] | Sequence[object] | None = None,
    captions: str | Path | pl.DataFrame | None = None,
    *,
    caption_conditions: Sequence[str] | None = (CAPTION_CONDITION,),
    template_condition: str = TEMPLATE_CONDITION,
) -> pl.DataFrame:
    """One row per prompt: `condition, occupation, group, template, caption_id, text`.

    - `occupations`: a file (one per line), a comma-separated string or a list. With
      `captions`, it restricts the captions to those occupations.
    - `templates`: template ids, set names or literal texts (see `biasamp.vocab.prompts`),
      or `Template` objects. Used when given, or when no `captions` are given (then the
      study's set). Template prompts get condition `template_condition` and group = the
      template id; the article before the occupation is chosen by sound.
    - `captions`: a `selection` table (path or frame); rows of `caption_conditions` become
      prompts, group = caption id.
    """
    from biasamp.vocab.prompts import Template, resolve_templates

    occ = parse_occupations(occupations)
    frames = []
    if templates is not None or captions is None:
        if occ is None:
            default = default_occupations_file()
            if default is None:
                raise BiasampError("no occupations given", hint="pass --occupations FILE (one per line) or a comma-separated list")
            occ = read_occupations_file(default)
        if templates is not None and not isinstance(templates, str) and templates and all(isinstance(t, Template) for t in templates):
            tpls = list(templates)
        else:
            tpls = resolve_templates(templates)
        ids = [t.id for t in tpls]
        if len(set(ids)) != len(ids):
            raise BiasampError(f"template ids repeat: {ids}", hint="give each template a distinct id")
        rows = [
            (template_condition, o, t.id, t.text, None, t.render(o))
            for o in occ
            for t in tpls
        ]
        frames.append(pl.DataFrame(rows, schema=PROMPT_SCHEMA, orient="row"))
    if captions is not None:
        cap = _captions_frame(captions, caption_conditions)
        if occ is not None:
            cap = cap.filter(pl.col("occupation").is_in(occ))
            if cap.is_empty():
                raise BiasampError(
                    "no caption in the selection table belongs to the occupations given",
                    hint="check the occupation names against the selection table's occupation column",
                )
        frames.append(cap.cast(PROMPT_SCHEMA))
    out = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=PROMPT_SCHEMA)
    if out.is_empty():
        raise BiasampError("no prompt to generate from", hint="give occupations and templates, or a selection table")
    return out


def fit_to_tokens(text: str, count: Callable[[str], int], limit: int | None) -> tuple[str, bool, int | None]:
    """Cut `text` to at most `limit` tokens (as `count` measures them, special tokens
    included) at a word boundary. Returns (text, truncated, tokens of the original)."""
    if limit is None:
        return text, False, None
    n = count(text)
    if n <= limit:
        return text, False, n
    words = text.split()
    lo, hi = 0, len(words)  # the longest prefix of lo words fits; hi words do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(" ".join(words[:mid])) <= limit:
            lo = mid
        else:
            hi = mid
    cut = " ".join(words[:lo])
    if lo == 0 or not cut:  # a single word longer than the limit: cut characters
        chars = words[0] if words else text
        lo_c, hi_c = 0, len(chars)
        while hi_c - lo_c > 1:
            mid = (lo_c + hi_c) // 2
            if count(chars[:mid]) <= limit:
                lo_c = mid
            else:
                hi_c = mid
        cut = chars[:lo_c]
    return cut, True, n


def slug(text: str) -> str:
    """Lower-case, file-name-safe, dot-free ASCII form of a name (for item ids).

    Accents are dropped ("médecin" -> "medecin"); a name with any non-ASCII character also
    gets a short hash of the whole name, so that names differing only there ("médecin",
    "medecin", "护士", "医生") never share an id.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^0-9a-z-]+", "-", folded.lower()).strip("-") or "x"
    if not text.isascii():
        s += "-" + hashlib.blake2s(text.encode(), digest_size=4).hexdigest()
    return s


def item_ids(conditions: Iterable[str], occupations: Iterable[str], groups: Iterable[str], indices: Iterable[int]) -> list[str]:
    """`condition__occupation__group__00000`, file-name and webdataset-key safe."""
    return [f"{slug(c)}__{slug(o)}__{slug(g) if not g.lstrip('-').isdigit() else g}__{i:05d}" for c, o, g, i in zip(conditions, occupations, groups, indices)]
