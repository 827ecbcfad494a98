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


def test_a_wider_network_starts_from_a_narrower_one_unchanged(tmp_path):
    import numpy as np

    from hybrid_model.io import save_model
    from hybrid_model.train import _warm_start

    narrow = build_model((64, 64, 3), filters=(4, 8, 16))
    x = np.random.default_rng(0).random((3, 64, 64, 3)).astype(np.float32)
    # trained-looking BatchNorm statistics, so a copy that ignored them would show
    for layer in narrow.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([g * 1.3, b + 0.1, m + 0.2, v * 2.0])
    save_model(narrow, tmp_path / "narrow.keras", {"input_size": 64})
    wide = build_model((64, 64, 3), filters=(6, 12, 24))
    before = wide.predict(x, verbose=0)
    _warm_start(wide, tmp_path / "narrow.keras")
    after = wide.predict(x, verbose=0)
    np.testing.assert_allclose(after, narrow.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(before, after)
    # the new filters are live (initialised, not zero), so training can use them
    assert np.abs(wide.get_layer("conv1").get_weights()[0][..., 4:]).sum() > 0


def test_context_blocks_widen_what_last_conv_sees():
    import numpy as np

    plain = build_model((128, 128, 3), filters=(4, 8, 16))
    context = build_model((128, 128, 3), filters=(4, 8, 16), context_blocks=2)
    assert context.get_layer(LAST_CONV).output.shape == plain.get_layer(LAST_CONV).output.shape
    # A response at one input pixel reaches last_conv cells 26 pixels away only with context.
    for layer in context.layers:  # non-zero 1x1 kernels, so the blocks carry signal
        if layer.name.endswith("_pw"):
            layer.set_weights([np.full_like(w, 0.05) for w in layer.get_weights()])
    reach = {}
    for name, model in (("plain", plain), ("context", context)):
        probe = keras.Model(model.inputs, model.get_layer(LAST_CONV).output)
        x = np.zeros((2, 128, 128, 3), np.float32)
        x[1, 64, 64] = 1.0
        diff = np.abs(probe.predict(x, verbose=0)[1] - probe.predict(x, verbose=0)[0]).sum(-1)
        rows = np.nonzero(diff.max(axis=1) > 1e-6)[0]
        reach[name] = (rows.max() - rows.min() + 1) * 4  # input pixels at 1/4
    assert reach["plain"] <= 32
    assert reach["context"] >= 64


def test_context_blocks_start_from_a_network_without_them_unchanged(tmp_path):
    import numpy as np

    from hybrid_model.io import save_model
    from hybrid_model.train import _warm_start

    plain = build_model((64, 64, 3), filters=(4, 8, 16))
    for layer in plain.layers:  # trained-looking BatchNorm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([g * 1.3, b + 0.1, m + 0.2, v * 2.0])
    save_model(plain, tmp_path / "plain.keras", {"input_size": 64})
    x = np.random.default_rng(1).random((3, 64, 64, 3)).astype(np.float32)
    context = build_model((64, 64, 3), filters=(4, 8, 16), context_blocks=3)
    _warm_start(context, tmp_path / "plain.keras")
    np.testing.assert_allclose(
        context.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    # the depthwise kernels are live, so the zero 1x1 kernels get a gradient
    assert np.abs(context.get_layer("context1_dw").get_weights()[0]).sum() > 0
    assert context.get_layer("context3_dw").dilation_rate == (8, 8)
