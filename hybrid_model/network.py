"""The hybrid CNN + LSTM + GRU classifier (DESIGN.md, "The model").

Conv blocks (Conv2D + BatchNorm + ReLU, MaxPool on the first ``pooled_blocks``) end in
``last_conv``, the ReLU after the last Conv2D ``conv_last`` (the usual Grad-CAM target), at 1/4
of the input by default: 64 x 64 for 256 x 256 (``pooled_blocks=3`` gives 1/8), fine enough for
Grad-CAM to point at a bleed a few millimetres thick. Its map (H' x W' x C) is max-pooled over
all columns and over bands of consecutive rows (``row_steps`` bands, 8 by default), and the
sequence of bands (C features each) is read top to bottom by an LSTM (return_sequences) and a GRU
whose per-band outputs are max-pooled; Dense + Dropout; Dense(1) ``logit``; sigmoid.

Why the poolings: the column max makes a bleed count wherever it lies in its row, and the max
over the GRU's outputs lets the evidence of one band reach the output in one step (without them
the network stayed at chance on the phantoms). Bands rather than every row shorten the sequence
that Grad-CAM's gradient must run back through one small sequential step at a time, its largest
cost, while the banded network classifies and points as well on the phantoms; the map keeps
last_conv's full resolution. The gradient of the score reaches ``last_conv`` at the positions
that won the maxima, so Grad-CAM keeps spatial detail.
Measurements and the variants tried: docs/experiments.md, "Network architecture and row bands".
"""

from __future__ import annotations

from hybrid_model.tfenv import load_tensorflow

load_tensorflow()  # before keras: the start-up chatter stays out of the output

import keras  # noqa: E402
from keras import layers  # noqa: E402

LAST_CONV = "last_conv"
DEFAULT_FILTERS = (8, 16, 32, 64)


def _conv_block(x, filters: int, name: str, pool: bool, relu_name: str = ""):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=relu_name or f"{name}_relu")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return x


def _context(x, blocks: int):
    """``blocks`` residual context blocks, then the ReLU named ``last_conv``.

    Block i: DepthwiseConv2D(3, dilation 2**(i+1)) -> Conv2D(1 x 1) whose kernel and bias start
    at zero, added to its input. At initialisation every block adds zero and the input is
    non-negative (a ReLU's output), so the final ReLU passes it unchanged: a network warm-started
    from one without context blocks (``train._warm_start`` copies the layers by name) computes
    exactly what that network did, and training grows the context from there. Receptive field
    of last_conv at 1/4 of the input: 26 input pixels without blocks, 26 + 16 x (2**blocks - 1)
    with them (138 for three)."""
    channels = x.shape[-1]
    for i in range(blocks):
        y = layers.DepthwiseConv2D(
            3, padding="same", dilation_rate=2 ** (i + 1), name=f"context{i + 1}_dw"
        )(x)
        y = layers.Conv2D(
            channels,
            1,
            kernel_initializer="zeros",
            bias_initializer="zeros",
            name=f"context{i + 1}_pw",
        )(y)
        x = layers.Add(name=f"context{i + 1}")([x, y])
    return layers.ReLU(name=LAST_CONV)(x)


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
    pooled_blocks: int | None = None,
    row_steps: int | None = 8,
    context_blocks: int = 0,
) -> keras.Model:
    """Conv blocks (Conv2D + BatchNorm + ReLU + MaxPool) -> rows -> LSTM -> GRU -> Dense -> sigmoid.

    The last conv block is named ``last_conv`` (the Grad-CAM target) and is not pooled.
    ``pooled_blocks``: how many of the other conv blocks halve the resolution (default: 2, so
    ``last_conv`` is at 1/4 of the input).
    ``row_steps``: the recurrent layers read last_conv as this many bands of consecutive rows
    (each band max-pooled); it must divide last_conv's rows; None reads every row.
    ``context_blocks``: residual blocks after the last conv block, each a dilated 3 x 3
    depthwise convolution (dilation 2, 4, 8, ...) and a 1 x 1 convolution added back, at
    last_conv's resolution, so each cell of last_conv sees more of the slice than the conv
    blocks' 26 pixels (the column max keeps nothing of where a response lies, so this is the
    network's only spatial context); see ``_context``.
    The output layer is ``logit`` (linear) followed by ``probability`` (sigmoid), so Grad-CAM can
    differentiate the pre-sigmoid score without editing the model.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    if pooled_blocks is None:  # last_conv at 1/4 of the input: 64x64 for 256x256
        pooled_blocks = min(2, len(filters) - 1)
    x = inputs
    for i, f in enumerate(filters[:-1]):
        x = _conv_block(x, f, f"conv{i + 1}", i < pooled_blocks)
    # last_conv is the activation after ReLU (the conventional Grad-CAM target): name the ReLU.
    if context_blocks:
        x = _conv_block(x, filters[-1], "conv_last", False)
        x = _context(x, context_blocks)
    else:
        x = _conv_block(x, filters[-1], "conv_last", False, relu_name=LAST_CONV)
    rows, cols, channels = x.shape[1], x.shape[2], x.shape[3]
    row_band = rows_per_step(rows, row_steps)
    if cols > 1 or row_band > 1:
        # Max over all columns before the rows are read: a bleed is found wherever it lies in
        # its row (translation invariance a raw W'*C row vector lacks), while the recurrent
        # layers still read the rows in order and the gradient reaches last_conv at the
        # positions that won the max. Bands of rows shorten the sequence (module docstring).
        # Named for its first job; it pools the row bands too (the name stays, as saved models
        # and the Grad-CAM tests know it).
        x = layers.MaxPooling2D((row_band, cols), name="column_pool")(x)
        rows, cols = x.shape[1], x.shape[2]
    x = layers.Reshape((rows, cols * channels), name="rows")(x)
    x = layers.LSTM(lstm_units, return_sequences=True, name="lstm")(x)
    # The GRU returns every band and the strongest response is kept (max over bands): the
    # evidence of a bleed in one band reaches the output in one step instead of having to
    # survive the remaining steps of recurrence (a last-state-only GRU stayed at chance).
    x = layers.GRU(gru_units, return_sequences=True, name="gru")(x)
    x = layers.GlobalMaxPooling1D(name="row_max")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logit = layers.Dense(1, name="logit")(x)
    prob = layers.Activation("sigmoid", name="probability", dtype="float32")(logit)
    return keras.Model(inputs, prob, name="hybrid_cnn_lstm_gru")
