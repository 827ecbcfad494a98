"""The hybrid CNN + LSTM + GRU classifier (DESIGN.md, "The model").

Conv blocks (Conv2D + BatchNorm + ReLU + MaxPool) keep the last feature map at 1/4 of the input
(64x64 for 256x256 input; ``pooled_blocks=3`` gives 1/8): fine enough for Grad-CAM to point at
a bleed a few millimetres thick (at 1/8 the map's peak often missed thin subdural crescents).
``last_conv`` is the output of the last conv block (Conv2D ``conv_last`` -> BatchNorm -> ReLU,
the ReLU layer carries the name), the usual Grad-CAM target. Its map (H' x W' x C) is max-pooled
over columns and over bands of H'/8 consecutive rows (``row_steps=8``) and reshaped to a
sequence of 8 row bands (C features each), read top to bottom by an LSTM (return_sequences) and
then a GRU whose per-band outputs are max-pooled; Dense + Dropout; Dense(1) logit; sigmoid.
Eight bands rather than all 64 rows: Grad-CAM's gradient runs back through the recurrent layers
one step at a time, small sequential operations that dominated its cost (forward + Grad-CAM at
0.80 to 0.84 of the forward-only rate with 64 steps, 0.86 to 0.92 with 8, on 2 CPU cores, batch
32, same Grad-CAM code), while on phantoms the banded network classifies and points as well
(the map itself keeps last_conv's full 64 x 64 resolution). Reading raw W'*C row vectors (no
column pooling) and keeping only the GRU's last state left the network at chance for several
epochs on the phantoms: the comments below say why each pooling is there. The gradient of the
score reaches ``last_conv`` at the positions that won the maxima, so Grad-CAM keeps spatial
detail.
"""

from __future__ import annotations

from hybrid_model.tfenv import load_tensorflow

load_tensorflow()  # before keras: the start-up chatter stays out of the output

import keras  # noqa: E402
from keras import layers  # noqa: E402

LAST_CONV = "last_conv"
DEFAULT_FILTERS = (8, 16, 32, 64)


def _conv_block(x, filters: int, name: str, pool: bool, batch_norm: bool, relu_name: str = ""):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=relu_name or f"{name}_relu")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return x


class RowStepsError(ValueError):
    """The number of recurrent steps does not divide last_conv's rows."""


def rows_per_step(rows: int, row_steps: int | None) -> int:
    """Rows of last_conv pooled into each recurrent step; RowStepsError unless ``row_steps``
    divides ``rows`` (None: one row per step)."""
    steps = rows if row_steps is None else row_steps
    if steps <= 0 or rows % steps:
        fits = ", ".join(str(d) for d in range(1, rows + 1) if rows % d == 0)
        raise RowStepsError(
            f"row_steps {row_steps} does not divide the {rows} rows of last_conv; "
            f"choose one of {fits}"
        )
    return rows // steps


def build_model(
    input_shape: tuple[int, int, int] = (256, 256, 3),
    *,
    filters: tuple[int, ...] = DEFAULT_FILTERS,
    lstm_units: int = 64,
    gru_units: int = 32,
    dense_units: int = 32,
    dropout: float = 0.3,
    column_pool: int | None = None,
    batch_norm: bool = True,
    pooled_blocks: int | None = None,
    row_steps: int | None = 8,
) -> keras.Model:
    """Conv blocks (Conv2D + BatchNorm + ReLU + MaxPool) -> rows -> LSTM -> GRU -> Dense -> sigmoid.

    The last conv block is named ``last_conv`` (the Grad-CAM target) and is not pooled.
    ``batch_norm=False`` gives bias-free convolutions that map empty space (air, letterbox
    padding) to exactly 0 at every layer; on phantoms that variant did not leave chance level
    in two epochs, so the demo model keeps BatchNorm.
    ``row_steps``: the recurrent layers read last_conv as this many bands of consecutive rows
    (each band max-pooled); it must divide last_conv's rows; None reads every row.
    The output layer is ``logit`` (linear) followed by ``probability`` (sigmoid), so Grad-CAM can
    differentiate the pre-sigmoid score without editing the model.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    if pooled_blocks is None:  # last_conv at 1/4 of the input: 64x64 for 256x256
        pooled_blocks = min(2, len(filters) - 1)
    if column_pool is None:  # default: pool all columns of last_conv into one per row
        column_pool = input_shape[1] // 2**pooled_blocks
    x = inputs
    for i, f in enumerate(filters[:-1]):
        x = _conv_block(x, f, f"conv{i + 1}", i < pooled_blocks, batch_norm)
    # last_conv is the activation after ReLU (the conventional Grad-CAM target): name the ReLU.
    x = _conv_block(x, filters[-1], "conv_last", False, batch_norm, relu_name=LAST_CONV)
    rows, cols, channels = x.shape[1], x.shape[2], x.shape[3]
    row_band = rows_per_step(rows, row_steps)
    if column_pool > 1 or row_band > 1:
        # Max over blocks of columns before the rows are read: a bleed is found wherever it lies
        # in its row (translation invariance the raw W'*C row vector lacks; with it the LSTM sat
        # at chance for epochs on phantoms), while the recurrent layers still read the rows in
        # order and the gradient reaches last_conv at the positions that won the max. Bands of
        # rows shorten the sequence (see the module docstring).
        # Named for its first job; it pools the row bands too (the name stays, as saved models
        # and the Grad-CAM tests know it).
        x = layers.MaxPooling2D((row_band, column_pool), name="column_pool")(x)
        rows, cols = x.shape[1], x.shape[2]
    x = layers.Reshape((rows, cols * channels), name="rows")(x)
    x = layers.LSTM(lstm_units, return_sequences=True, name="lstm")(x)
    # The GRU returns every row and the strongest row response is kept (max over rows): the
    # evidence of a bleed in one row reaches the output in one step instead of having to survive
    # the remaining rows of recurrence, which is what kept a last-state-only GRU at chance.
    x = layers.GRU(gru_units, return_sequences=True, name="gru")(x)
    x = layers.GlobalMaxPooling1D(name="row_max")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logit = layers.Dense(1, name="logit")(x)
    prob = layers.Activation("sigmoid", name="probability", dtype="float32")(logit)
    return keras.Model(inputs, prob, name="hybrid_cnn_lstm_gru")
