"""Sorting headlines: categories, confidence, evidence, and the `digest classify` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner

from digest.models import CATEGORIES
from digest.understand import Categorizer, classify

pytestmark = pytest.mark.no_db

# Written for these tests, one clear case per category and language.
CLEAR = [
    ("Le gouvernement présente son projet de loi devant les députés", "fr", "politics"),
    ("Le FMI relève sa prévision de croissance pour le Maroc", "fr", "economy"),
    ("Botola : le Raja s'impose dans le derby face au Wydad", "fr", "sport"),
    ("Rougeole : le ministère lance une campagne de vaccination dans les écoles", "fr", "health"),
    ("Festival de cinéma de Marrakech : le jury dévoile son palmarès", "fr", "other"),
    ("La inflación se modera en octubre por el abaratamiento de la electricidad", "es", "economy"),
    ("Elecciones en Senegal: la oposición denuncia fraude en las urnas", "es", "politics"),
    ("El Real Madrid golea al Betis y se coloca líder de LaLiga", "es", "sport"),
    ("Los hospitales andaluces refuerzan las urgencias por la gripe", "es", "health"),
    ("Detenidos tres hombres por el robo de una joyería en Ceuta", "es", "other"),
    ("Kenya's parliament votes to impeach deputy president", "en", "politics"),
    ("Nigeria's inflation eases as central bank holds interest rates", "en", "economy"),
    ("Super Eagles coach names squad for World Cup qualifiers", "en", "sport"),
    ("WHO warns of cholera outbreak as hospitals fill in Sudan", "en", "health"),
    ("Lagos film festival opens with a tribute to a late actress", "en", "other"),
]


@pytest.mark.parametrize(("text", "language", "category"), CLEAR)
def test_clear_headlines_get_their_category_and_language(
    text: str, language: str, category: str
) -> None:
    result = classify(text)
    assert (result.language, result.category) == (language, category)
    assert not result.flagged
    assert result.evidence, "a decision shows the terms it rests on"


def test_evidence_names_the_deciding_terms() -> None:
    result = classify("Inflation : les prix à la consommation reculent en octobre")
    assert result.category == "economy"
    assert any(item.startswith("inflation") for item in result.evidence)


def test_headline_without_evidence_goes_to_other_and_is_flagged() -> None:
    result = classify("Une journée pas comme les autres à Tanger")
    assert result.category == "other"
    assert result.flagged
    assert result.confidence < 0.45


def test_conflicting_evidence_is_flagged_not_guessed() -> None:
    # A minister (politics) at a match (sport): neither side clearly wins.
    result = classify("Le ministre au stade")
    assert result.flagged
    assert result.category == "other"


def test_body_decides_when_the_headline_says_little() -> None:
    headline = "Une révolution imminente à Rabat"
    body = (
        "Les médecins et les patients des hôpitaux publics verront le diagnostic "
        "et le traitement changer grâce aux nouveaux outils de soins."
    )
    assert classify(headline).category == "other"
    with_body = classify(headline, body=body)
    assert with_body.category == "health"
    assert any(item.startswith("body:") for item in with_body.evidence)


def test_body_cannot_outvote_a_clear_headline() -> None:
    body = " ".join(["hôpital patients médecins santé"] * 50)
    result = classify("Mercato : le Wydad recrute un attaquant", body=body)
    assert result.category == "sport"


def test_given_language_is_used_instead_of_detection() -> None:
    # "gol" means nothing in the French lexicon: forcing French changes the decision.
    assert classify("Gol de Brahim en el derbi", language="es").category == "sport"
    assert classify("Gol de Brahim en el derbi", language="fr").language == "fr"


def test_unsorted_language_is_reported_as_other() -> None:
    result = classify("Die Regierung und der Kanzler streiten über den Haushalt", language=None)
    assert result.language == "other"
    assert result.category in CATEGORIES


@pytest.mark.parametrize(
    "text",
    ["", "   ", "!!! ??? ...", "\x00\x01\x02", "🙂" * 50, "a" * 100_000, "é" * 5000, "<script>"],
)
def test_hostile_input_gives_a_flagged_other_without_failing(text: str) -> None:
    result = classify(text)
    assert result.category in CATEGORIES
    assert 0.0 <= result.confidence <= 1.0


def test_confidence_grows_with_agreeing_evidence() -> None:
    thin = classify("Le FMI à Rabat")
    thick = classify("Le FMI salue la croissance et la baisse de l'inflation au Maroc")
    assert thin.category == thick.category == "economy"
    assert thick.confidence > thin.confidence


def test_categorizer_instances_agree_with_module_function() -> None:
    texts = [text for text, _, _ in CLEAR]
    assert [r.category for r in Categorizer().classify_many(texts)] == [
        classify(t).category for t in texts
    ]


def test_cli_classifies_a_file_in_order(runner: FlaskCliRunner, tmp_path: Path) -> None:
    source = tmp_path / "headlines.txt"
    source.write_text(
        "Botola : le Raja s'impose face au Wydad\n"
        "\n"
        "Nigeria's inflation eases as central bank holds interest rates\n",
        encoding="utf-8",
    )
    result = runner.invoke(args=["classify", str(source)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [row["text"] for row in rows] == [
        "Botola : le Raja s'impose face au Wydad",
        "",
        "Nigeria's inflation eases as central bank holds interest rates",
    ]
    assert [row["category"] for row in rows] == ["sport", "other", "economy"]
    assert rows[2]["language"] == "en"
    assert set(rows[0]) == {"text", "language", "category", "confidence"}


def test_cli_reads_standard_input(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["classify", "--evidence"], input="El Real Madrid golea al Betis\n")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["category"] == "sport"
    assert row["evidence"]
    assert row["flagged"] is False


def test_cli_refuses_undecodable_input(runner: FlaskCliRunner, tmp_path: Path) -> None:
    source = tmp_path / "latin1.txt"
    source.write_bytes("Élection à Dakar\n".encode("latin-1"))
    result = runner.invoke(args=["classify", str(source)])
    assert result.exit_code != 0
    assert "not UTF-8" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_binary_and_missing_files(runner: FlaskCliRunner, tmp_path: Path) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"abc\x00def")
    result = runner.invoke(args=["classify", str(binary)])
    assert result.exit_code != 0
    assert "binary" in result.output
    missing = runner.invoke(args=["classify", str(tmp_path / "nope.txt")])
    assert missing.exit_code != 0
    assert "does not exist" in missing.output
    directory = runner.invoke(args=["classify", str(tmp_path)])
    assert directory.exit_code != 0
