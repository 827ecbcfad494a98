"""What of a slice the network sees: the letterbox of the whole image, or a square around the
head (``preprocess.head_frame``), and the geometry that maps the model's pixels back."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_model.dicom_results import source_grid
from hybrid_model.greywindow import pseudo_hu
from hybrid_model.preprocess import (
    HEAD_MARGIN,
    MAX_HEAD_ZOOM,
    Frame,
    head_frame,
    hu_to_channels,
    model_frame,
    resize_to_model,
    window,
)
from hybrid_model.render import maps_npz, peak, read_map


def _head(
    shape=(512, 512), centre=(230, 290), radii=(150, 120), table=True, air=-1000.0
) -> np.ndarray:
    """An HU slice: an elliptic head (brain 35 HU inside a 6-pixel skull of 1 000 HU) on air,
    with a thin table line under it, as a scanner shows a head in a field of view."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    r = ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2
    hu = np.full(shape, air, np.float32)
    hu[r <= 1.0] = 1000.0
    inner = ((rows - centre[0]) / (radii[0] - 6)) ** 2 + ((cols - centre[1]) / (radii[1] - 6)) ** 2
    hu[inner <= 1.0] = 35.0
    if table:
        hu[centre[0] + radii[0] + 20 : centre[0] + radii[0] + 22, 40:-40] = 200.0
    return hu


def test_the_head_frame_is_centred_on_the_head_and_leaves_out_the_table():
    frame = head_frame(hu_to_channels(_head()))
    # The head's long side is 2 x 150 + 1 pixels; the frame adds 10 % around it.
    assert frame.side == pytest.approx(HEAD_MARGIN * 301, abs=6)
    assert frame.top + frame.side / 2 == pytest.approx(230, abs=4)
    assert frame.left + frame.side / 2 == pytest.approx(290, abs=4)
    # The table, 20 pixels under the head, is not what sets the frame's size.
    with_table, without = frame, head_frame(hu_to_channels(_head(table=False)))
    assert abs(with_table.side - without.side) <= 4


def test_a_windowed_grey_export_gets_the_head_frame_of_its_hu_slice():
    """8-bit brain-window exports show air, fat and CSF alike as black: the body is found above
    the image's darkest value, so the same head gets the same frame."""
    hu = _head()
    grey = np.round(window(hu, 40, 80) * 255) / 255
    from_grey = head_frame(hu_to_channels(pseudo_hu(grey.astype(np.float32))))
    from_hu = head_frame(hu_to_channels(hu))
    assert abs(from_grey.side - from_hu.side) <= 6
    assert abs(from_grey.top - from_hu.top) <= 4 and abs(from_grey.left - from_hu.left) <= 4


def test_a_small_section_is_zoomed_at_most_max_head_zoom():
    """A vertex cap 60 pixels across is not blown up to fill the input."""
    frame = head_frame(hu_to_channels(_head(radii=(30, 30), table=False)))
    assert frame.side == pytest.approx(512 / MAX_HEAD_ZOOM, abs=1)


def test_an_image_without_a_body_gets_the_letterbox():
    air = hu_to_channels(np.full((200, 300), -1000.0, np.float32))
    assert head_frame(air) == Frame.letterbox((200, 300)) == Frame(-50, 0, 300)


def test_model_frame_is_the_letterbox_unless_the_model_frames_heads():
    channels = hu_to_channels(_head())
    assert model_frame(channels) == Frame(0, 0, 512)
    assert model_frame(channels, "head") == head_frame(channels)
    with pytest.raises(ValueError, match="framing must be one of"):
        model_frame(channels, "zoom")


def test_the_letterbox_frame_resizes_as_before():
    """Frame.letterbox is the square ``resize_to_model`` always padded into."""
    img = np.random.default_rng(0).random((100, 200, 3)).astype(np.float32)
    default = resize_to_model(img, 64)
    framed = resize_to_model(img, 64, Frame.letterbox((100, 200)))
    np.testing.assert_array_equal(default, framed)
    assert default[:8].max() == 0.0 and default[-8:].max() == 0.0  # 50 rows of padding each


def test_a_frame_past_the_edge_is_padded_with_black():
    img = np.ones((100, 100, 3), np.float32)
    out = resize_to_model(img, 100, Frame(-50, 50, 100))
    assert out[:50].max() == 0.0  # above the image
    assert out[50:, 50:].max() == 0.0  # right of it
    assert out[50:, :50].min() == 1.0  # its lower right quarter


@pytest.mark.parametrize("dot", [(200, 200), (330, 400), (120, 250)])
def test_the_peak_of_a_head_framed_map_lands_on_the_native_pixel(dot):
    """A bright dot in the native slice, resized through the head frame: the peak of the
    model-size image maps back onto the dot, within a model pixel's size."""
    hu = _head()
    frame = head_frame(hu_to_channels(hu))
    native = np.zeros((512, 512), np.float32)
    native[dot[0] - 1 : dot[0] + 2, dot[1] - 1 : dot[1] + 2] = 1.0
    cam = resize_to_model(native[..., None], 128, frame)[..., 0]
    row, col = peak(cam, (512, 512), frame)
    scale = frame.side / 128
    assert abs(row - dot[0]) <= scale and abs(col - dot[1]) <= scale
    # And the letterbox geometry would put it elsewhere: the frame matters.
    wrong = peak(cam, (512, 512))
    assert wrong is not None and max(abs(wrong[0] - dot[0]), abs(wrong[1] - dot[1])) > 10


def test_source_grid_puts_a_head_framed_map_where_the_frame_lies():
    frame = Frame(100, 150, 256)
    cam = np.zeros((64, 64), np.float32)
    cam[32, 32] = 1.0  # its centre: native (32 + 0.5) x 4 - 0.5 past the frame's corner
    grid = source_grid(cam, (512, 512), frame)
    r, c = np.unravel_index(int(np.argmax(grid)), grid.shape)
    assert abs(r - 229.5) <= 2 and abs(c - 279.5) <= 2
    assert np.hypot(*np.subtract((r, c), peak(cam, (512, 512), frame))) <= 2
    assert grid[:100].max() == 0.0 and grid[:, :150].max() == 0.0  # outside the frame: 0


def test_a_pack_keeps_each_maps_frame():
    maps = np.zeros((3, 8, 8), np.float32)
    frames = [Frame(10, -20, 300), None, Frame(0, 0, 512)]
    data = maps_npz(maps, (256, 256), frames)
    assert [read_map(data, i).frame for i in range(3)] == frames
    old = maps_npz(maps, (256, 256))  # a pack written before frames: the letterbox
    assert read_map(old, 1).frame is None
