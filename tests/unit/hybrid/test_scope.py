"""The out-of-scope gate (hybrid_model.scope): real CT files, synthetic non-heads and hard heads,
phantoms, windowed exports, the header hints, and the gate inside ``decode_image``."""

from __future__ import annotations

import functools
import statistics
import time

import cv2
import numpy as np
import pytest

from hybrid_model import errors
from hybrid_model.dicom import decode_dicom
from hybrid_model.phantoms import make_slice
from hybrid_model.preprocess import DecodeOptions, decode_image
from hybrid_model.scope import MIN_SKULL_RAYS, check_grey, check_hu
from tests.utils import nonhead

from .conftest import dicom_bytes, pydicom_file, read_dicom

# Real files (pydicom's bundled test files and the pydicom-data package), looked at one by one
# (docs/decoding.md, "Out-of-scope gate"): True for a head slice.
REAL = {
    "CT_small.dcm": False,  # 128x128 crop (85 mm) of a vertebra and paraspinal muscle
    "bad_sequence.dcm": False,  # a thoracic vertebra with rib heads, 147 mm field (says NECK)
    "explicit_VR-UN.dcm": False,  # contrast-enhanced abdomen, prone, 307 mm (says PANCREAS)
    "693_UNCR.dcm": True,  # supraventricular brain with a head holder, 0.48 mm pixels
    "693_J2KR.dcm": True,  # the same slice as JPEG 2000 lossless
    "693_J2KI.dcm": True,  # and lossy
    "J2K_pixelrep_mismatch.dcm": True,  # skull base: sinuses, petrous bones, mastoids (HEAD)
}
# (level, width) of the windows a grey export may carry.
WINDOWS = {
    "brain": (40, 80),
    "subdural": (80, 200),
    "soft tissue": (40, 380),
    "bone": (500, 2000),
    "wide bone": (600, 2800),
}
SEEDS = range(4)


@functools.cache
def _real(name: str):
    return decode_dicom(pydicom_file(name), name, max_pixels=10**8, isolate="off")


def _grey8(hu: np.ndarray, window: str) -> np.ndarray:
    """What an 8-bit export in ``window`` holds, as decoding reads it back."""
    return np.round(nonhead.windowed(hu, *WINDOWS[window]) * 255) / 255


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("name", REAL)
def test_real_ct_files_in_hu(name):
    dicom = _real(name)
    scope = check_hu(dicom.hu, dicom.spacing_mm, body_part=dicom.body_part)
    print(name, scope.head, scope.reason, {k: round(v, 3) for k, v in scope.figures.items()})
    assert scope.head is REAL[name], scope.reason
    assert check_hu(dicom.hu).head is REAL[name], "without the spacing"
    assert check_hu(dicom.hu, dicom.spacing_mm).head is REAL[name], "without the hint"


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("name", REAL)
def test_real_ct_files_as_8_bit_exports(name, window):
    scope = check_grey(_grey8(_real(name).hu, window))
    assert scope.head is REAL[name], f"{window}: {scope.reason}"


def test_the_spine_and_abdomen_files_fail_for_the_reasons_documented():
    figures = {n: check_hu(_real(n).hu, _real(n).spacing_mm) for n in REAL if not REAL[n]}
    assert "runs off the image" in figures["CT_small.dcm"].reason
    assert "runs off the image" in figures["bad_sequence.dcm"].reason
    assert "307 mm across" in figures["explicit_VR-UN.dcm"].reason
    # Each would fail the skull rule too: no bone shell under the skin.
    assert all(s.figures["skull_rays"] < MIN_SKULL_RAYS for s in figures.values())


@pytest.mark.parametrize("kind", nonhead.NON_HEADS)
def test_synthetic_non_heads_are_not_head_in_every_form(kind):
    for seed in SEEDS:
        hu, spacing = nonhead.NON_HEADS[kind](np.random.default_rng(seed))
        assert not check_hu(hu, spacing).head, (seed, check_hu(hu, spacing).reason)
        assert not check_hu(hu).head, (seed, "no spacing", check_hu(hu).reason)
        for window in WINDOWS:
            scope = check_grey(_grey8(hu, window))
            assert not scope.head, (seed, window, scope.figures)


@pytest.mark.parametrize("kind", nonhead.HARD_HEADS)
def test_vertex_and_skull_base_slices_are_heads_in_every_form(kind):
    for seed in SEEDS:
        hu, spacing = nonhead.HARD_HEADS[kind](np.random.default_rng(seed))
        assert check_hu(hu, spacing).head, (seed, check_hu(hu, spacing).reason)
        assert check_hu(hu).head, (seed, "no spacing")
        for window in WINDOWS:
            scope = check_grey(_grey8(hu, window))
            assert scope.head, (seed, window, scope.reason)


def test_200_phantom_heads_none_rejected():
    rng = np.random.default_rng(2026)
    rejected = {"hu": 0, "brain window": 0, "bone window": 0}
    for _ in range(200):
        hu, _, _, meta = make_slice(rng, 256)
        rejected["hu"] += not check_hu(hu, meta["spacing_mm"]).head
        rejected["brain window"] += not check_grey(_grey8(hu, "brain")).head
        rejected["bone window"] += not check_grey(_grey8(hu, "bone")).head
    print(f"200 phantom heads (256 px), rejected: {rejected}")
    assert rejected == {"hu": 0, "brain window": 0, "bone window": 0}


def test_localizer_image_type_is_a_scout_whatever_the_pixels():
    hu, _, _, meta = make_slice(np.random.default_rng(3), 256)
    assert check_hu(hu, meta["spacing_mm"]).head
    scope = check_hu(hu, meta["spacing_mm"], image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    assert not scope.head and "LOCALIZER" in scope.reason


def _without_skull(hu: np.ndarray, degrees: float) -> np.ndarray:
    """``hu`` with its skull erased (to scalp) over ``degrees`` of arc around the skull."""
    ys, xs = np.nonzero(hu > 250)
    yy, xx = np.mgrid[0 : hu.shape[0], 0 : hu.shape[1]]
    angle = np.degrees(np.arctan2(yy - ys.mean(), xx - xs.mean()))
    gone = (hu > 250) & (np.mod(angle + 20, 360) < degrees)
    return np.where(gone, 40.0, hu).astype(np.float32)


def test_a_head_hint_relaxes_a_borderline_shell_but_never_makes_a_chest_a_head():
    """Half the skull gone (a craniectomy) is still a head. With 250 degrees of the ring gone
    the slice fails on its own and passes with BodyPartExamined HEAD; a chest stays a chest
    whatever the header says."""
    hu, _, _, meta = make_slice(np.random.default_rng(11), 256)
    assert check_hu(_without_skull(hu, 180), meta["spacing_mm"]).head
    borderline = _without_skull(hu, 250)
    alone = check_hu(borderline, meta["spacing_mm"])
    hinted = check_hu(borderline, meta["spacing_mm"], body_part="HEAD")
    assert not alone.head and "skull under the skin" in alone.reason, alone.figures
    assert hinted.head, hinted.reason
    chest, spacing = nonhead.chest(np.random.default_rng(0))
    assert not check_hu(chest, spacing, body_part="HEAD").head
    assert not check_hu(chest, None, body_part="BRAIN").head


def test_shape_rules_and_bad_input():
    assert "too small" in check_hu(np.zeros((16, 16), np.float32)).reason
    assert "too long" in check_grey(np.zeros((1024, 512), np.float32)).reason
    assert "no body" in check_hu(np.full((256, 256), -1000.0, np.float32), 0.5).reason
    assert "no body" in check_grey(np.zeros((256, 256), np.float32)).reason
    with pytest.raises(ValueError, match="2-D"):
        check_grey(np.zeros((64, 64, 3), np.float32))


def test_figures_are_deterministic_and_fast():
    hu = _real("J2K_pixelrep_mismatch.dcm").hu
    assert check_hu(hu, 0.431) == check_hu(hu, 0.431)
    times = []
    for _ in range(15):
        started = time.perf_counter()
        check_hu(hu, 0.431)
        times.append(time.perf_counter() - started)
    # A few ms on one free core (docs/decoding.md); the bound leaves room for a loaded runner.
    assert statistics.median(times) < 0.1, times


# --- the gate inside decode_image ---------------------------------------------------------


def test_ct_small_through_decode_image_is_not_head_unless_the_gate_is_off():
    data = pydicom_file("CT_small.dcm")
    with pytest.raises(errors.NotHead) as info:
        decode_image(data, "CT_small.dcm")
    assert info.value.reason == "not_head" and "not_head" in errors.REASONS
    message = str(info.value)
    assert message.startswith("CT_small.dcm: not a head CT slice: the body runs off the image")
    assert "HEMOSCAN_HEAD_GATE=false" in message
    scored = decode_image(data, "CT_small.dcm", options=DecodeOptions(head_gate=False))
    assert scored.pixels.shape == (256, 256, 3) and scored.native_shape == (128, 128)


def test_head_files_decode_with_the_gate_on():
    for name in ("693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"):
        assert decode_image(pydicom_file(name), name, size=None).native_shape == (512, 512)


def test_every_format_of_a_chest_is_refused_and_of_a_phantom_scored():
    chest, spacing = nonhead.chest(np.random.default_rng(1))
    head, _, _, meta = make_slice(np.random.default_rng(1), 256)
    for hu, sp, is_head in ((chest, spacing, False), (head, meta["spacing_mm"], True)):
        hu1024 = np.clip(np.round(hu) + 1024, 0, 4095).astype(np.uint16)
        brain16 = np.round(nonhead.windowed(hu, 40, 80) * 65535).astype(np.uint16)
        forms = {
            "ct.dcm": nonhead.dicom_bytes(hu, sp),
            "brain8.png": nonhead.png8(hu, 40, 80),
            "bone8.png": nonhead.png8(hu, 500, 2000),
            "brain16.png": _png(brain16),  # a windowed 16-bit export (hemoscan's phantoms)
            "hu1024.png": _png(hu1024),  # read as HU + 1024 by png16 "auto"
        }
        for name, data in forms.items():
            if is_head:
                assert decode_image(data, name).pixels.shape == (256, 256, 3), name
            else:
                with pytest.raises(errors.NotHead):
                    decode_image(data, name)


def test_localizer_dicom_is_refused_from_its_header():
    hu, _, _, meta = make_slice(np.random.default_rng(4), 256)
    scout = nonhead.dicom_bytes(
        hu, meta["spacing_mm"], ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]
    )
    with pytest.raises(errors.NotHead, match="LOCALIZER"):
        decode_image(scout, "scout.dcm")
    long_scout, spacing = nonhead.scout(np.random.default_rng(4))
    with pytest.raises(errors.NotHead, match="too long"):
        decode_image(nonhead.dicom_bytes(long_scout, spacing), "scout.dcm")


def test_values_without_hu_are_judged_by_their_structure():
    """HU + 1024 stored without RescaleIntercept (``not_hu_like``): the gate reads the grey
    structure instead of HU thresholds."""
    head, _, _, meta = make_slice(np.random.default_rng(6), 256)
    chest, spacing = nonhead.chest(np.random.default_rng(6))
    for hu, sp, is_head in ((head, meta["spacing_mm"], True), (chest, spacing, False)):
        ds = read_dicom(nonhead.dicom_bytes(hu, sp))  # stored = HU + 1024
        del ds.RescaleIntercept, ds.RescaleSlope
        data = dicom_bytes(ds)
        if is_head:
            assert "not_hu_like" in decode_image(data, "x.dcm").flags
        else:
            with pytest.raises(errors.NotHead):
                decode_image(data, "x.dcm")


def test_other_modalities_are_not_gated_when_allowed():
    chest, spacing = nonhead.chest(np.random.default_rng(2))
    data = nonhead.dicom_bytes(chest, spacing, Modality="MR")
    with pytest.raises(errors.NotCT):
        decode_image(data, "mr.dcm")
    assert decode_image(data, "mr.dcm", options=DecodeOptions(allow_non_ct=True)).flags == ()


def test_the_message_quotes_no_header_text():
    chest, spacing = nonhead.chest(np.random.default_rng(5))
    data = nonhead.dicom_bytes(chest, spacing, BodyPartExamined="XYZZYHEAD")
    with pytest.raises(errors.NotHead) as info:
        decode_image(data, "c.dcm")
    assert "XYZZY" not in str(info.value) and "PHANTOM" not in str(info.value)


def _whole_image_rings(labels, candidates, centre):  # type: ignore[no-untyped-def]
    """``scope._rings`` without its bounding boxes: each piece closed and filled over the
    whole image."""
    from hybrid_model import scope

    kernel = np.ones((3, 3), np.uint8)
    found = set()
    for label in candidates - {0}:
        piece = cv2.morphologyEx((labels == label).astype(np.uint8), cv2.MORPH_CLOSE, kernel)
        if scope._fill_holes(piece > 0)[centre]:
            found.add(label)
    return found


def _exhaustive_rays(body: np.ndarray, bone: np.ndarray):  # type: ignore[no-untyped-def]
    """The ray search without its shortcuts: full-length rays from every origin, rings tested
    on the whole image (the caller swaps ``_whole_image_rings`` in)."""
    from hybrid_model import scope

    labels, _ = scope._components(bone)
    code = np.where(body, labels, -1).astype(np.int32)
    found = [scope._rays(code, labels, o, float("inf")) for o in scope._origins(body, bone)]
    return max(found, key=lambda r: r[1]["skull_rays"])


def test_the_ray_searchs_shortcuts_change_no_figure(monkeypatch):
    """``_best_rays`` stops its rays at the body's farthest box corner and its search at an
    origin whose every ray is skull-like, and ``_rings`` works in each piece's bounding box: on
    real heads, hard heads, non-heads and phantoms the figures and the shell are those of the
    exhaustive search."""
    from hybrid_model import scope

    seen: list[tuple[np.ndarray, np.ndarray]] = []
    measure = scope._measure

    def watch(m):  # type: ignore[no-untyped-def]
        if m.body.any():
            seen.append((m.body, m.bone))
        return measure(m)

    monkeypatch.setattr(scope, "_measure", watch)
    for name in REAL:
        dicom = _real(name)
        check_hu(dicom.hu, dicom.spacing_mm)
        check_grey(_grey8(dicom.hu, "brain"))
    for kinds in (nonhead.NON_HEADS, nonhead.HARD_HEADS):
        for make in kinds.values():
            check_hu(*make(np.random.default_rng(0)))
    for seed in range(6):
        hu, _, _, _ = make_slice(np.random.default_rng(seed), 256)
        check_hu(hu, 0.9)
    assert len(seen) > 15
    boxed = scope._rings
    for body, bone in seen:
        fast_shell, fast = scope._best_rays(body, bone)
        monkeypatch.setattr(scope, "_rings", _whole_image_rings)
        full_shell, full = _exhaustive_rays(body, bone)
        monkeypatch.setattr(scope, "_rings", boxed)
        assert fast == full
        assert np.array_equal(fast_shell, full_shell)


def test_the_boxed_ring_test_is_the_whole_images_up_to_the_edges():
    """``_rings`` in each piece's box gives the whole-image answer for centres anywhere,
    the image's outermost rows and columns included (OpenCV's closing treats the outside as
    bone there)."""
    from hybrid_model import scope

    rng = np.random.default_rng(11)
    compared = enclosing = 0
    for _ in range(300):
        img = np.zeros((24, 24), np.uint8)
        for _ in range(3):  # rings and blobs, some touching or one pixel from an edge
            cy, cx = (int(v) for v in rng.integers(0, 24, 2))
            r = int(rng.integers(2, 8))
            cv2.circle(img, (cx, cy), r, 1, int(rng.choice([-1, 1, 2])))
        labels, areas = scope._components(img)
        candidates = set(range(1, areas.size))
        for centre in [(0, int(rng.integers(24))), (int(rng.integers(24)), 23),
                       tuple(int(v) for v in rng.integers(0, 24, 2))]:  # fmt: skip
            boxed = scope._rings(labels, candidates, centre)
            assert boxed == _whole_image_rings(labels, candidates, centre)
            compared += 1
            enclosing += bool(boxed)
    assert compared == 900 and enclosing > 50


def test_components_and_boxes_are_opencvs_statistics():
    """``_components`` labels as ``connectedComponentsWithStats`` does and counts the same
    areas; ``_box`` gives its bounding boxes (what the gate read from the statistics before)."""
    from hybrid_model import scope

    rng = np.random.default_rng(3)
    for density in (0.0, 0.05, 0.3, 0.6, 1.0):
        mask = rng.random((37, 53)) < density
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8
        )
        ours, areas = scope._components(mask)
        assert np.array_equal(ours, labels)
        assert areas.tolist() == stats[:, cv2.CC_STAT_AREA].tolist()
        for label in range(1, count):
            x, y, w, h = stats[label, :4]
            assert scope._box(labels == label) == (y, x, h, w)
