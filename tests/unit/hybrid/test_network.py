"""Architecture: Conv -> LSTM -> GRU -> Dense, and a high-resolution ``last_conv``."""

from __future__ import annotations

import keras

from hybrid_model.network import LAST_CONV, build_model


def _first_index(model, kind) -> int:
    return next(i for i, layer in enumerate(model.layers) if isinstance(layer, kind))


def test_layer_order_conv_lstm_gru_dense():
    model = build_model()
    order = [
        _first_index(model, k)
        for k in (keras.layers.Conv2D, keras.layers.LSTM, keras.layers.GRU, keras.layers.Dense)
    ]
    assert order == sorted(order)
    assert model.layers[_first_index(model, keras.layers.LSTM)].return_sequences
    assert model.output_shape == (None, 1)
    assert model.layers[-1].activation is keras.activations.sigmoid


def test_last_conv_keeps_resolution_and_feeds_rows():
    model = build_model((256, 256, 3))
    assert model.get_layer(LAST_CONV).output.shape[1:] == (64, 64, 64)
    assert model.get_layer("rows").output.shape[1:] == (8, 64)  # one vector per band of 8 rows
    coarse = build_model((256, 256, 3), pooled_blocks=3)
    assert coarse.get_layer(LAST_CONV).output.shape[1:] == (32, 32, 64)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert model.layers.index(convs[-1]) < model.layers.index(model.get_layer(LAST_CONV))
    assert model.count_params() < 2_000_000  # a few MB on disk


def test_logit_layer_is_linear(tiny_model):
    assert tiny_model.get_layer("logit").activation is keras.activations.linear


def test_row_steps_set_the_sequence_length():
    every_row = build_model((256, 256, 3), row_steps=None)
    assert every_row.get_layer("rows").output.shape[1:] == (64, 64)
    assert build_model((256, 256, 3), row_steps=16).get_layer("rows").output.shape[1:] == (16, 64)
    # Same weights whatever the bands (pooling carries none), so one warm-starts the other.
    assert [w.shape for w in every_row.weights] == [w.shape for w in build_model().weights]


def test_row_steps_must_divide_the_rows():
    import pytest

    with pytest.raises(ValueError, match="row_steps 3"):
        build_model((256, 256, 3), row_steps=3)
