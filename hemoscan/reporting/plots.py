"""The report's plots (matplotlib, Agg, PNG embedded as data: the page stays one file).

* the histogram of every scored image's probability, the threshold marked, split by the
  manifest's labels when there are labels;
* with labels, the ROC curve with the operating point at the threshold.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

WIDTH_IN, HEIGHT_IN, DPI = 6.0, 3.6, 110


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def histogram_png(probs: np.ndarray, threshold: float, labels: np.ndarray | None = None) -> bytes:
    """PNG: the probability histogram (log counts) with the threshold; by label if given."""
    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(0.0, 1.0, 41)
    if labels is not None and len(labels) == len(probs):
        for value, name, colour in ((0, "normal (label)", "#4477aa"),
                                    (1, "hemorrhage (label)", "#cc3311")):  # fmt: skip
            ax.hist(probs[labels == value], bins=bins, alpha=0.65, label=name, color=colour)
    else:
        ax.hist(probs, bins=bins, color="#4477aa", label="scored images")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("probability of hemorrhage")
    ax.set_ylabel("images (log scale)")
    ax.set_title(f"{len(probs)} scored images")
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    return _png(fig)


def roc_png(labels: np.ndarray, probs: np.ndarray, metrics: dict[str, Any]) -> bytes:
    """PNG: the ROC curve against the labels, with the operating point of ``metrics``
    (``classification_metrics``: its ROC AUC, threshold, sensitivity and specificity)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, probs)
    threshold, sens, spec = metrics["threshold"], metrics["sensitivity"], metrics["specificity"]
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color="#cc3311", label=f"ROC AUC {metrics['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    ax.plot([1 - spec], [sens], "o", color="black",
            label=f"threshold {threshold:.3f}: sens {sens:.3f}, spec {spec:.3f}")  # fmt: skip
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal", adjustable="box")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class=plot alt="{alt}" src="data:image/png;base64,{data}">'


__all__ = ["histogram_png", "img_tag", "roc_png"]
