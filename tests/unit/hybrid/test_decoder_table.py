"""The explicit plugin table (hybrid_model/decoders.py) against what pydicom 3 offers."""

from __future__ import annotations

import pytest

from hybrid_model import decoders


def test_every_table_plugin_is_one_pydicom_has_for_that_syntax():
    from pydicom.pixels import get_decoder

    for uid, plugins in decoders.IN_PROCESS_PLUGINS.items():
        assert "gdcm" not in plugins, uid
        assert set(plugins) <= set(get_decoder(uid).available_plugins), (uid, plugins)


def test_installed_plugins_cover_every_compressed_syntax():
    for uid in decoders.IN_PROCESS_PLUGINS:
        assert decoders.available_plugins(uid), f"nothing installed decodes {uid}"


def test_gdcm_syntaxes_are_those_of_pydicoms_gdcm_plugin():
    from pydicom.pixels.decoders import gdcm

    assert decoders.GDCM_SYNTAXES == frozenset(str(uid) for uid in gdcm.DECODER_DEPENDENCIES)


def test_native_syntaxes_use_no_plugin_and_all_others_are_encapsulated():
    from pydicom.uid import UID

    for uid in decoders.NATIVE_SYNTAXES:
        assert not UID(uid).is_encapsulated
    for uid in decoders.IN_PROCESS_PLUGINS:
        assert UID(uid).is_encapsulated


def test_python_gdcm_is_found():
    pytest.importorskip("gdcm")
    assert decoders.gdcm_available()
