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
def _exceptions() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    with open(data_path("articles.toml"), "rb") as f:
        d = tomllib.load(f)
    return frozenset(d.get("an", [])), frozenset(d.get("a", [])), frozenset(d.get("read_as_words", []))


# Stems whose "h" is silent: "an heiress", "an honorable judge", "an hourly worker".
_SILENT_H_STEMS = ("hour", "honest", "honor", "honour", "heir")
# "un-" + a vowel sound: "an uninsured driver", "an unimportant role", "an unidentified man".
_UN_PREFIXES = ("unin", "unim", "unid", "unill")
# Spellings that start with a "y" or "w" sound: "a university", "a user", "a eulogist".
_YOU_PREFIXES = ("uni", "use", "usu", "ura", "uro", "uti", "eu", "ewe")
_QUOTES = "\"'()[]{}\u201c\u201d\u2018\u2019\u00ab\u00bb`"


def _number_article(digits: str) -> str:
    """'an' for numbers read with a vowel sound: 8, 11, 18, 80-89, 800-899, 8,000, 11,000..."""
    digits = digits.lstrip("0") or "0"
    if digits[0] == "8":
        return "an"
    if len(digits) % 3 == 2 and digits[:2] in ("11", "18"):  # eleven, eighteen (thousand, million...)
        return "an"
    return "a"


def indefinite_article(phrase: str) -> str:
    """'a' or 'an' for `phrase`, by its first word's sound.

    Checked in order: the exceptions list (whole word, then the part before a hyphen);
    a leading number read aloud; silent-h stems; "un-" words; spellings read with a "y"
    sound; initialisms of up to four capitals read letter by letter ("an MRI", "a CEO"),
    unless listed as read like words ("a NASA engineer"); else the first letter.
    """
    words = phrase.strip().split()
    if not words:
        raise BiasampError("cannot choose an article for an empty occupation")
    word = words[0].strip(_QUOTES)
    low = word.lower().strip(string.punctuation.replace("-", "").replace(".", ""))
    if not low:
        raise BiasampError(f"cannot choose an article for {phrase!r}: its first word has no letter or digit")
    an, a, read_as_words = _exceptions()
    head = low.split("-")[0]
    for form in (low, head):
        if form in an:
            return "an"
        if form in a:
            return "a"
    number = re.match(r"\d[\d,]*", word)
    if number:
        return _number_article(number.group().replace(",", ""))
    if low.startswith(_SILENT_H_STEMS) or low.startswith(_UN_PREFIXES):
        return "an"
    if low.startswith(_YOU_PREFIXES):
        return "a"
    letters = re.sub(r"[^A-Za-z]", "", word.split("-")[0])
    initialism = (letters.isupper() and 2 <= len(letters) <= 4 and letters.lower() not in read_as_words) or (
        len(letters) == 1 and letters.isupper() and "-" in word)  # "an X-ray", "a T-shirt", "an F-16"
    if initialism:
        return "an" if letters[0].lower() in _VOWEL_NAMED_LETTERS else "a"
    return "an" if low[:1] in _VOWEL_SOUND_LETTERS else "a"


def check_template(text: str, *, where: str = "template") -> str:
    """Refuse unknown or malformed placeholders, naming them."""
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise BiasampError(f"{where} {text!r} is malformed: {e}", hint="write placeholders as {a} and {occupation}") from None
    fields = [f for f, _, _ in parsed]
    decorated = [f for f, spec, conv in parsed if spec or conv]
    if decorated:
        raise BiasampError(
            f"{where} {text!r} formats a placeholder ({', '.join('{' + f + '...}' for f in decorated)})",
            hint="write placeholders plainly, as {a} and {occupation}: conversions (!r) and format specs (:...) are not allowed",
        )
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

    Each value of `spec` is either comma-separated names and set names, or one text taken
    whole (commas included). Default: the study's set.
    """
    templates, sets = bundled()
    if spec is None:
        spec = ["study"]
    if isinstance(spec, str):
        spec = [spec]
    items: list[str] = []
    for value in spec:
        if "{" not in value:
            items.extend(s.strip() for s in value.split(",") if s.strip())
            continue
        first = value.split(",", 1)[0].strip()
        if "," in value and "{" not in first and (first in templates or first in sets):
            raise BiasampError(
                f"template value {value!r} mixes a template name ({first!r}) and a template text",
                hint="give each text a value of its own, e.g. --templates study --templates 'A drawing of {a} {occupation}' "
                "(a text is taken whole, commas included)",
            )
        items.append(value)
    out: list[Template] = []
    for item in items:
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
