import os
import subprocess
import sys

from hemoscan.cli import main


def test_help_lists_the_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "db" in out
    assert "not a diagnosis" in out


def test_help_does_not_import_tensorflow():
    # The producer and CLI run on small CPU nodes and must never pay TensorFlow's import.
    code = (
        "import sys; from hemoscan.cli import build_parser; build_parser(); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_invalid_setting_is_one_clean_line(monkeypatch, capsys):
    monkeypatch.setenv("HEMOSCAN_DATABASE_URL", "mysql://nope")
    from hemoscan.settings import get_settings

    get_settings.cache_clear()
    try:
        assert main(["db", "current"]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "HEMOSCAN_DATABASE_URL" in err and "Traceback" not in err


def test_scan_of_a_missing_folder_fails_before_loading_the_model(tmp_path):
    """The argument is checked first: a clear one-line error, and TensorFlow never imported."""
    code = (
        "import sys; from hemoscan.cli import main; "
        "rc = main(['scan', '/missing/folder']); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; sys.exit(rc)"
    )
    env = {**os.environ, "HEMOSCAN_DATA_DIR": str(tmp_path)}
    env = {k: v for k, v in env.items() if k not in ("HEMOSCAN_BROKER_URL",)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 1, out.stderr
    assert "source folder does not exist: /missing/folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_predict_checks_its_paths_before_loading_the_model():
    code = (
        "import sys; from hemoscan.cli import main\n"
        "try: main(['predict', '/missing/slice.dcm'])\n"
        "except SystemExit as exc: rc = exc.code\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr  # argparse's usage error
    assert "no such file or folder: /missing/slice.dcm" in out.stderr
