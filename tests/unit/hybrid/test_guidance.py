"""Grad-CAM guidance without training: its map is the served Grad-CAM map, its targets and
loss point at the lesion, and a missing masks/ folder is caught before any training.

The tests that train (guided steps, `train(cam_weight=...)`) are in tests/model/.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf

from hybrid_model.gradcam import gradcam_model, weighted_activations
from hybrid_model.guidance import cell_targets, epoch_score, pointing_loss
from tests.utils.networks import blob_images


def test_training_map_is_the_served_gradcam_map(tiny_model):
    """The map the loss trains on, upsampled and normalised, equals GradCam's output."""
    from hybrid_model.gradcam import GradCam

    images = blob_images()
    cam, logit, _ = weighted_activations(gradcam_model(tiny_model), tf.constant(images))
    assert cam.shape == (4, 8, 8)  # last_conv resolution of the tiny model
    cam = tf.nn.relu(cam)
    up = tf.image.resize(cam[..., None], (32, 32), method="bilinear")[..., 0].numpy()
    up = up / (up.max(axis=(1, 2), keepdims=True) + 1e-12)
    probs, maps = GradCam(tiny_model)(images)
    np.testing.assert_allclose(maps, up, atol=1e-4)
    np.testing.assert_allclose(probs, tf.sigmoid(logit).numpy()[:, 0], atol=1e-5)


def test_cell_targets_are_cell_centres_near_the_lesion():
    """Cells of 4 px: a target only where the cell's central 2 x 2 pixels are within 1 px."""
    masks = np.zeros((2, 8, 12, 1), np.float32)
    masks[0, 0:4, 0:4] = 1.0  # covers cell (0, 0) entirely
    masks[0, 4:8, 7] = 1.0  # the last column of cell (1, 1): its centre (cols 5-6) is 1-2 px away
    masks[0, 4, 8:12] = 1.0  # the first row of cell (1, 2): centre rows 5-6 are 1-2 px away
    targets = cell_targets(tf.constant(masks), 4, tolerance=1).numpy()
    assert targets.shape == (2, 2, 3)
    np.testing.assert_allclose(targets[0], [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    assert cell_targets(tf.constant(masks), 4, tolerance=0).numpy()[0, 1].max() == 0
    assert targets[1].max() == 0  # a negative slice: no target, no NaN


def test_pointing_loss_is_low_on_the_lesion_and_finite_on_empty_maps():
    target = np.zeros((3, 4, 4), np.float32)
    target[:, 1, 2] = 1.0
    cam = np.zeros((3, 4, 4), np.float32)
    cam[0, 1, 2] = 5.0  # peak on the lesion
    cam[1, 3, 0] = 5.0  # peak elsewhere
    loss = pointing_loss(tf.constant(cam), tf.constant(target)).numpy()  # cam[2] all zero
    assert np.isfinite(loss).all()
    assert loss[0] < 0.01 < loss[2] < loss[1]
    # All negative (the served map would be all zero): still ranked, least negative on target.
    negative = -np.ones((1, 4, 4), np.float32)
    negative[0, 1, 2] = -0.1
    assert pointing_loss(tf.constant(negative), tf.constant(target[:1])).numpy()[0] < 0.01


def test_load_masks_follows_model_geometry(tmp_path):
    from hybrid_model.data import load_labelled
    from hybrid_model.train import _load_masks

    (tmp_path / "masks").mkdir()
    rows = ["id,hemorrhage"]
    for i, label in enumerate([0, 1]):
        cv2.imwrite(str(tmp_path / f"s{i}.png"), np.full((64, 64), 60, np.uint16))
        rows.append(f"s{i},{label}")
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 30:40] = 255
    cv2.imwrite(str(tmp_path / "masks" / "s1.png"), mask)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_labelled(tmp_path, 32, head_gate=False)  # uniform images: not heads
    masks = _load_masks(data, 32)
    assert masks.shape == (2, 32, 32) and masks[0].max() == 0
    assert masks[1, 5:10, 15:20].min() == 255 and masks[1].sum() == 255 * 25


def test_guidance_without_masks_is_a_clear_error(tmp_path):
    from hybrid_model.data import DatasetError
    from hybrid_model.phantoms import generate
    from hybrid_model.train import train

    generate(tmp_path / "data", 8, seed=2, fmt="png", size=32)
    for mask in (tmp_path / "data" / "masks").iterdir():
        mask.unlink()
    with pytest.raises(DatasetError, match="masks/"):
        train(tmp_path / "data", tmp_path / "m.keras", epochs=1, size=32, cam_weight=1.0)


def test_lesion_cells_mark_every_cell_a_lesion_pixel_touches():
    from hybrid_model.guidance import lesion_cells

    masks = np.zeros((1, 8, 8, 1), np.float32)
    masks[0, 0, 0] = 1.0  # one pixel in the corner of cell (0, 0)
    masks[0, 5:7, 5:7] = 1.0  # inside cell (1, 1)
    cells = lesion_cells(tf.constant(masks), 4).numpy()[0, ..., 0]
    np.testing.assert_array_equal(cells, [[1, 0], [0, 1]])


def test_lesion_map_loss_weighs_lesion_cells():
    from hybrid_model.guidance import lesion_map_loss

    cells = tf.constant([[[[1.0]], [[0.0]]]])  # (1, 2, 1, 1)
    missed_lesion = tf.constant([[[[-2.0]], [[-2.0]]]])
    false_alarm = tf.constant([[[[2.0]], [[2.0]]]])
    # The same logit error costs pos_weight times more on a lesion cell.
    a = float(lesion_map_loss(missed_lesion, cells, pos_weight=10.0))
    b = float(lesion_map_loss(false_alarm, cells, pos_weight=10.0))
    assert a > 5 * b


def test_epoch_score_weighs_pointing_or_floors_it():
    """3 x ROC AUC + weight x pointing; under the floor an epoch can never be kept, and with
    weight 0 and a floor the best ROC AUC among the epochs at or over it wins."""
    assert epoch_score(0.94, 0.9, 1.0) == pytest.approx(3 * 0.94 + 0.9)
    assert epoch_score(0.94, 0.9, 0.0) == pytest.approx(3 * 0.94)
    assert epoch_score(0.95, 0.70, 0.0, 0.85) == float("-inf")
    epochs = [(0.9365, 0.965), (0.9417, 0.925), (0.9452, 0.700)]  # start, two epochs
    best = max(epochs, key=lambda e: epoch_score(*e, 0.0, 0.85))
    assert best == (0.9417, 0.925)
    assert max(epochs, key=lambda e: epoch_score(*e, 1.0)) == (0.9365, 0.965)
