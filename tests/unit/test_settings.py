from pathlib import Path

import pytest

from hemoscan.errors import ConfigurationError
from hemoscan.settings import HeatmapPolicy, Settings, load_settings


def test_defaults_are_the_embedded_mode(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("HEMOSCAN_DATABASE_URL", "HEMOSCAN_BROKER_URL", "HEMOSCAN_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.broker_url is None and not settings.distributed
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("/.hemoscan/hemoscan.db")
    assert Path(settings.effective_output_location) == (tmp_path / ".hemoscan/heatmaps")
    assert settings.heatmaps is HeatmapPolicy.MAPS
    assert settings.model_path.name == "demo.keras"


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("HEMOSCAN_BROKER_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("HEMOSCAN_BATCH_SIZE", "16")
    monkeypatch.setenv("HEMOSCAN_HEATMAPS", "positives")
    settings = load_settings()
    assert settings.distributed
    assert settings.batch_size == 16
    assert settings.heatmaps is HeatmapPolicy.POSITIVES


def test_empty_string_means_unset(monkeypatch):
    monkeypatch.setenv("HEMOSCAN_BROKER_URL", "")
    assert load_settings().broker_url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEMOSCAN_BATCH_SIZE", "lots"),
        ("HEMOSCAN_BATCH_SIZE", "0"),
        ("HEMOSCAN_THRESHOLD", "1.5"),
        ("HEMOSCAN_HEATMAPS", "some"),
        ("HEMOSCAN_BROKER_URL", "http://example"),
        ("HEMOSCAN_DATABASE_URL", "mysql://x"),
    ],
)
def test_invalid_value_names_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    assert variable in str(err.value)


def test_secrets_are_not_printed():
    settings = Settings(s3_secret_access_key="hunter2", flower_password="pw")
    assert "hunter2" not in repr(settings) and "pw'" not in repr(settings)
