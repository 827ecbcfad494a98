"""``iter_manifest``: the keys (and labels) of a manifest CSV, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.sources import ManifestError, SourceItem, iter_manifest


def _manifest(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_keys_with_labels_zero_one_and_empty(tmp_path):
    path = _manifest(tmp_path, "ct/a.dcm,1\nct/b.dcm,0\nct/c.dcm,\nct/d.dcm\n")
    assert list(iter_manifest(path)) == [
        SourceItem("ct/a.dcm", true_label=1),
        SourceItem("ct/b.dcm", true_label=0),
        SourceItem("ct/c.dcm", true_label=None),
        SourceItem("ct/d.dcm", true_label=None),
    ]


def test_the_words_for_labels_and_spaces_around_cells(tmp_path):
    path = _manifest(tmp_path, " a.png , yes\nb.png,False\nc.png, TRUE \nd.png,no\n")
    assert [(i.key, i.true_label) for i in iter_manifest(path)] == [
        ("a.png", 1),
        ("b.png", 0),
        ("c.png", 1),
        ("d.png", 0),
    ]


@pytest.mark.parametrize("header", ["key,label", "object_key,hemorrhage", "ID,y", "path"])
def test_a_first_row_naming_a_column_is_a_header(tmp_path, header):
    path = _manifest(tmp_path, f"{header}\na.dcm,1\n")
    assert [i.key for i in iter_manifest(path)] == ["a.dcm"]


def test_a_header_word_after_the_first_line_is_a_key(tmp_path):
    """Only line 1 can be a header: an object called "image" further down is scanned."""
    path = _manifest(tmp_path, "a.dcm\nimage\n")
    assert [i.key for i in iter_manifest(path)] == ["a.dcm", "image"]


def test_comments_and_blank_lines_are_skipped(tmp_path):
    path = _manifest(tmp_path, "# exported 2026-12-01\n\na.dcm,1\n   \n  # b.dcm,1\n,1\nc.dcm,0\n")
    assert [(i.key, i.true_label) for i in iter_manifest(path)] == [("a.dcm", 1), ("c.dcm", 0)]


def test_a_bad_label_names_the_file_and_line(tmp_path):
    path = _manifest(tmp_path, "key,label\na.dcm,1\n\nb.dcm,maybe\n")
    items = iter_manifest(path)
    assert next(items).key == "a.dcm"  # streamed: the rows before the bad one come out
    with pytest.raises(ManifestError) as err:
        next(items)
    assert f"{path}:4:" in str(err.value) and "'maybe'" in str(err.value)


def test_the_pattern_filters_keys_and_labels_are_still_checked(tmp_path):
    path = _manifest(tmp_path, "ct/a.dcm,1\nct/b.png,0\nmr/c.dcm,1\nct/d.dcm,\n")
    assert [i.key for i in iter_manifest(path, "ct/*.dcm")] == ["ct/a.dcm", "ct/d.dcm"]
    bad = _manifest(tmp_path, "ct/a.dcm,1\nmr/c.dcm,2\n")
    with pytest.raises(ManifestError, match=":2:"):
        list(iter_manifest(bad, "ct/*"))  # a filtered-out row with a bad label is still bad


def test_an_unreadable_manifest_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="cannot read manifest"):
        list(iter_manifest(tmp_path / "absent.csv"))
