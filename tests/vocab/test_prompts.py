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


@pytest.mark.parametrize(
    "phrase,article",
    [
        # capitals: short initialisms letter by letter, longer words (or listed acronyms) as words
        ("SURGEON", "a"), ("LAWYER", "a"), ("NURSE", "a"), ("MANAGER", "a"), ("NASA engineer", "a"),
        ("SWAT officer", "a"), ("IKEA designer", "an"), ("UN diplomat", "a"), ("SAT tutor", "an"),
        ("FAA inspector", "an"), ("AI researcher", "an"), ("EMT", "an"), ("RN", "an"), ("LGBTQ advocate", "an"),
        # silent h, also in longer forms
        ("honorable judge", "an"), ("heiress", "an"), ("honours student", "an"), ("hourly worker", "an"),
        ("historian", "a"), ("hotel manager", "a"),
        # "un-" words against "uni" read with a y sound
        ("unimportant role", "an"), ("uninsured driver", "an"), ("unidentified man", "an"), ("unarmed guard", "an"),
        ("unique artist", "a"), ("unisex hairdresser", "a"), ("uniformed officer", "a"), ("unionized worker", "a"),
        ("unidirectional tester", "a"), ("utility worker", "a"), ("urban planner", "an"), ("Ubuntu admin", "an"),
        ("usual suspect", "a"), ("eunuch", "a"), ("ewer maker", "a"), ("onerous task", "an"),
        # numbers read aloud
        ("8th grade teacher", "an"), ("18-wheeler driver", "an"), ("11th grade teacher", "an"), ("80s singer", "an"),
        ("800-pound gorilla", "an"), ("18,000-seat arena manager", "an"), ("1st grade teacher", "a"),
        ("100-meter sprinter", "a"), ("110-meter hurdler", "a"), ("2nd officer", "a"),
        # hyphenated and quoted forms
        ("once-famous actor", "a"), ("US-based consultant", "a"), ("one-woman show", "a"), ("X-ray technician", "an"),
        ("T-shirt printer", "a"), ("F-16 pilot", "an"), ("'accountant'", "an"), ("(engineer)", "an"), ('"MRI" tech', "an"),
        ("U.S. marshal", "a"),
    ],
)
def test_article_by_sound_harder_cases(phrase, article):
    assert indefinite_article(phrase) == article


def test_article_needs_a_letter_or_digit():
    with pytest.raises(BiasampError, match="empty occupation"):
        indefinite_article("   ")
    with pytest.raises(BiasampError, match="no letter or digit"):
        indefinite_article("'' clerk")


from hypothesis import given, strategies as st  # noqa: E402


@given(st.from_regex(r"[a-z]{5,12}", fullmatch=True))
def test_long_capitalised_words_take_the_lower_case_article(word):
    """Shouting a word does not change its sound: only short capitals read as initialisms."""
    assert indefinite_article(word.upper()) == indefinite_article(word) in ("a", "an")


def test_template_values_names_and_texts():
    both = resolve_templates(["study", "A drawing of {a} {occupation}, in pencil"])
    assert [t.render("engineer") for t in both] == ["A photo of the face of an engineer", "A drawing of an engineer, in pencil"]
    assert [t.id for t in resolve_templates("study,works-as")] == ["face", "works-as"]
    with pytest.raises(BiasampError, match="mixes a template name") as e:
        resolve_templates("study,A drawing of {a} {occupation}")
    assert "--templates study --templates" in str(e.value)


@pytest.mark.parametrize("text", ["A photo of {a} {occupation!r}", "A photo of {a:>3} {occupation}", "A {occupation!s:10}"])
def test_formatted_placeholders_are_refused(text):
    with pytest.raises(BiasampError, match="formats a placeholder"):
        check_template(text)


def test_stable_bias_prompt_word_for_word():
    """`portrait` chooses the article by sound; `portrait-verbatim` is Stable Bias's prompt as written."""
    assert resolve_templates("portrait")[0].render("engineer") == "Photo portrait of an engineer"
    assert resolve_templates("portrait-verbatim")[0].render("engineer") == "Photo portrait of a engineer"
    assert "portrait-verbatim" not in [t.id for t in resolve_templates("all")]
