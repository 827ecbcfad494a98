"""The demo model on real CT it has never seen: the slices shipped by pydicom and pydicom-data.

Their labels are unknown, so only sanity is asserted (issue 14): the spine slice CT_small.dcm is
rejected as ``not_head`` or scored below the model's threshold, and on the head slices the
Grad-CAM peak lies on tissue between 0 and 100 HU (brain or blood), not on bone or air.
``bad_sequence.dcm`` is a spine slice (BodyPartExamined NECK; a vertebra with rib heads, no skull):
the gate rejecting it is the right answer; if it is scored, its peak must be on tissue too.
"""

from __future__ import annotations

import pytest

from hybrid_model.realct import TISSUE_HU, check

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows():
    pytest.importorskip("data_store", reason="pydicom-data is in the dev extra")
    return {row["file"]: row for row in check()}


def test_every_real_slice_was_found_and_scored(rows):
    for name, row in rows.items():
        assert "error" not in row, f"{name}: {row.get('error')}"
        assert 0.0 <= row["probability"] <= 1.0


def test_the_spine_slice_is_rejected_or_below_the_threshold(rows):
    row = rows["CT_small.dcm"]
    assert row["gate"] == "not_head" or not row["flagged"], row


# Measured with the committed demo weights (stage 5, 2026-12-02; stage 8, 2026-12-03): on
# 693_UNCR and its JPEG 2000 copy the peak sits at 139 HU (the inner table's partial-volume band), so issue 14's acceptance
# check fails there; strict, so a model that passes makes these fail until the marks go.
_INNER_TABLE = pytest.mark.xfail(
    strict=True, reason="demo weights: Grad-CAM peak at 139 HU on 693_UNCR (issue 14 open)"
)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("693_UNCR.dcm", marks=_INNER_TABLE),
        pytest.param("693_J2KR.dcm", marks=_INNER_TABLE),
        "J2K_pixelrep_mismatch.dcm",
    ],
)
def test_on_head_slices_the_heatmap_peak_is_on_tissue(rows, name):
    row = rows[name]
    assert row["gate"] == "head", row
    assert "peak_hu" in row, f"{name}: an all-zero map has no peak"
    assert TISSUE_HU[0] <= row["peak_hu"] <= TISSUE_HU[1], row


def test_the_neck_slice_is_rejected_or_points_at_tissue(rows):
    row = rows["bad_sequence.dcm"]
    assert row["gate"] == "not_head" or TISSUE_HU[0] <= row.get("peak_hu", -1e9) <= TISSUE_HU[1]
