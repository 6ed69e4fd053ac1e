"""Prompt templates and the indefinite article chosen by sound.

Templates use `{a}` (article) and `{occupation}`; anything else is refused at load with a
clear message. The article follows pronunciation, not spelling: "an hour", "a university",
"an MRI technician".
"""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass
from functools import lru_cache

from biasamp.errors import BiasampError
from biasamp.vocab import data_path

PLACEHOLDERS = frozenset({"a", "occupation"})
_VOWEL_SOUND_LETTERS = set("aeiou")
# Letters whose *name* starts with a vowel sound, for initialisms written in capitals.
_VOWEL_NAMED_LETTERS = set("aefhilmnorsx")


@dataclass(frozen=True)
class Template:
    id: str
    text: str
    source: str = ""

    def render(self, occupation: str) -> str:
        return self.text.format(a=indefinite_article(occupation), occupation=occupation)


@lru_cache(maxsize=1)
def _exceptions() -> tuple[frozenset[str], frozenset[str]]:
    with open(data_path("articles.toml"), "rb") as f:
        d = tomllib.load(f)
    return frozenset(d.get("an", [])), frozenset(d.get("a", []))


def indefinite_article(phrase: str) -> str:
    """'a' or 'an' for `phrase`, by its first word's sound."""
    words = phrase.strip().split()
    if not words:
        raise BiasampError("cannot choose an article for an empty occupation")
    word = words[0]
    low = word.lower().strip(string.punctuation.replace("-", "").replace(".", ""))
    an, a = _exceptions()
    if low in an:
        return "an"
    if low in a:
        return "a"
    for prefix in ("uni", "use", "usu", "ura", "uro", "eu", "ewe", "one"):
        if low.startswith(prefix):
            return "a"
    letters = re.sub(r"[^A-Za-z]", "", word)
    if len(letters) >= 2 and letters.isupper():  # an initialism read letter by letter: "an MRI", "a CEO"
        return "an" if letters[0].lower() in _VOWEL_NAMED_LETTERS else "a"
    return "an" if low[:1] in _VOWEL_SOUND_LETTERS else "a"


def check_template(text: str, *, where: str = "template") -> str:
    """Refuse unknown or malformed placeholders, naming them."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise BiasampError(f"{where} {text!r} is malformed: {e}", hint="write placeholders as {a} and {occupation}") from None
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise BiasampError(
            f"{where} {text!r} has unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}",
            hint="allowed placeholders: {a} (article) and {occupation}",
        )
    if "occupation" not in fields:
        raise BiasampError(f"{where} {text!r} has no {{occupation}} placeholder", hint="add {occupation}")
    return text


@lru_cache(maxsize=1)
def bundled() -> tuple[dict[str, Template], dict[str, list[str]]]:
    with open(data_path("templates.toml"), "rb") as f:
        d = tomllib.load(f)
    templates = {k: Template(k, check_template(v["text"], where=f"bundled template {k!r}"), v.get("source", "")) for k, v in d["templates"].items()}
    return templates, {k: list(v) for k, v in d.get("sets", {}).items()}


def resolve_templates(spec: str | list[str] | None = None) -> list[Template]:
    """Templates from names, set names or literal texts (anything with a '{' is a text).

    `spec` may be a comma-separated string. Default: the study's set.
    """
    templates, sets = bundled()
    if spec is None:
        spec = ["study"]
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()] if "{" not in spec else [spec]
    out: list[Template] = []
    for item in spec:
        if "{" in item:
            out.append(Template(f"custom-{len(out)}", check_template(item, where="user template"), "user"))
        elif item in sets:
            out.extend(templates[t] for t in sets[item])
        elif item in templates:
            out.append(templates[item])
        else:
            raise BiasampError(
                f"unknown template or template set {item!r}",
                hint=f"templates: {', '.join(templates)}; sets: {', '.join(sets)}; or a text with {{a}} and {{occupation}}",
            )
    seen: dict[str, Template] = {}
    for t in out:
        seen.setdefault(t.id, t)
    return list(seen.values())


def load_templates_file(path: str) -> list[Template]:
    """One template per line (blank lines and '#' comments skipped)."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        raise BiasampError(f"cannot read templates file {path}: {e}") from None
    out = []
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(Template(f"file-{i}", check_template(line, where=f"{path} line {i}"), path))
    if not out:
        raise BiasampError(f"templates file {path} holds no template")
    return out
