from pathlib import Path

from hemoscan.settings_doc import table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_configuration_table_matches_the_settings_class():
    text = README.read_text()
    assert table() in text, "README's configuration table is stale: python -m hemoscan.settings_doc"


def test_readme_gives_the_two_commands_and_the_disclaimer():
    text = README.read_text()
    assert "scripts/demo.sh" in text and "scripts/test.sh" in text
    assert "not a diagnosis" in text and "not clinically valid" in text
