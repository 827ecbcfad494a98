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


def _store(root: Path, names: list[str]):
    from hemoscan.storage import LocalStore

    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return LocalStore(root)


def test_an_rsna_table_labels_the_listing_and_skips_what_it_does_not_name(tmp_path):
    from producer.sources import iter_labelled_listing, read_layout_table

    store = _store(tmp_path / "src", ["train/ID_aa.dcm", "train/ID_bb.dcm", "train/ID_cc.dcm"])
    table = _manifest(
        tmp_path,
        "ID,Label\nID_aa_any,1\nID_aa_subdural,1\nID_bb_epidural,1\nID_bb_any,0\nID_aa_any,1\n",
    )
    got = list(iter_labelled_listing(store, read_layout_table(table)))
    assert [(i.key, i.true_label) for i in got] == [("train/ID_aa.dcm", 1), ("train/ID_bb.dcm", 0)]


def test_cq500_and_kaggle_tables_label_folders_and_zero_padded_names(tmp_path):
    from producer.sources import iter_labelled_listing, read_layout_table

    store = _store(tmp_path / "cq", ["CQ500CT7 CQ500CT7/Unknown Study/CT 5mm/CT000001.dcm"])
    reads = tmp_path / "reads.csv"
    reads.write_text("name,Category,R1:ICH,R2:ICH,R3:ICH\nCQ500-CT-7,B1,1,0,1\n")
    assert [i.true_label for i in iter_labelled_listing(store, read_layout_table(reads))] == [1]
    store = _store(tmp_path / "kg", ["head_ct/007.png", "head_ct/notes.png"])
    labels = tmp_path / "labels.csv"
    labels.write_text("id, hemorrhage\n7,0\n")
    got = list(iter_labelled_listing(store, read_layout_table(labels)))
    assert [(i.key, i.true_label) for i in got] == [("head_ct/007.png", 0)]


def test_a_plain_manifest_is_no_layout_table_and_a_broken_one_is_a_manifest_error(tmp_path):
    from producer.sources import read_layout_table

    assert read_layout_table(_manifest(tmp_path, "key,label\na.dcm,1\n")) is None
    broken = tmp_path / "reads.csv"
    broken.write_text("name,R1:ICH\nCQ500-CT-1,1\n")
    with pytest.raises(ManifestError, match="R2:ICH"):
        read_layout_table(broken)


def test_a_manifest_series_column_is_read_and_empty_means_none(tmp_path):
    from producer.sources import iter_manifest

    path = tmp_path / "m.csv"
    path.write_text("key,label,series\na.png,1,patient-7 head\nb.png,0,\nc.png,,x\n")
    items = list(iter_manifest(path))
    assert [(i.key, i.true_label, i.series) for i in items] == [
        ("a.png", 1, "patient-7 head"),
        ("b.png", 0, None),
        ("c.png", None, "x"),
    ]
