import pytest

from biasamp.errors import BiasampError
from biasamp.vocab.prompts import check_template, indefinite_article, load_templates_file, resolve_templates


@pytest.mark.parametrize(
    "phrase,article",
    [
        ("engineer", "an"), ("nurse", "a"), ("hour worker", "an"), ("honest broker", "an"),
        ("university professor", "a"), ("umpire", "an"), ("usher", "an"), ("user researcher", "a"),
        ("MRI technician", "an"), ("CEO", "a"), ("FBI agent", "an"), ("HVAC technician", "an"),
        ("European diplomat", "a"), ("one-man band", "a"), ("x-ray technician", "an"),
        ("electrician", "an"), ("unicyclist", "a"), ("herbalist", "an"), ("hairdresser", "a"),
    ],
)
def test_article_by_sound(phrase, article):
    assert indefinite_article(phrase) == article


def test_bundled_templates_render():
    got = [t.render("engineer") for t in resolve_templates("study")]
    assert got == ["A photo of the face of an engineer"]
    assert len(resolve_templates("all")) == 5
    assert resolve_templates("works-as")[0].render("hour worker") == "A person who works as an hour worker"


def test_unknown_placeholder_is_refused():
    with pytest.raises(BiasampError, match=r"unknown placeholder\(s\) \{job\}"):
        check_template("A photo of {a} {job}")
    with pytest.raises(BiasampError, match="no {occupation}"):
        check_template("A photo of a person")
    with pytest.raises(BiasampError, match="unknown template or template set 'nope'"):
        resolve_templates("nope")


def test_templates_file_names_line(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("# mine\nA drawing of {a} {occupation}\nA {role}\n")
    with pytest.raises(BiasampError, match="line 3"):
        load_templates_file(str(p))
