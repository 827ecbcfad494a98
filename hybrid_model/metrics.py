"""Classification metrics shared by training and evaluation (numpy in, dict out)."""

from __future__ import annotations

from typing import Any

import numpy as np

TARGET_SPECIFICITY = 0.95
CLASS_NAMES = ("normal", "hemorrhage")


def threshold_at_specificity(
    y_true: np.ndarray, probs: np.ndarray, specificity: float = TARGET_SPECIFICITY
) -> tuple[float, float, float]:
    """Lowest threshold whose specificity is >= ``specificity``: (threshold, sens, spec).

    We choose the operating point by specificity rather than Youden's J because a screening
    queue is judged by how many normal scans it flags; the sensitivity is what that costs.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y_true, probs)
    ok = (1.0 - fpr) >= specificity
    idx = int(np.flatnonzero(ok)[-1]) if ok.any() else 0
    threshold = float(min(thresholds[idx], 1.0))
    return threshold, float(tpr[idx]), float(1.0 - fpr[idx])


ECE_BINS = 10


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Expected calibration error: the mean |observed frequency - mean probability| over
    ``bins`` equal-width probability bins, weighted by how many slices fall in each."""
    y = np.asarray(y_true, np.float64)
    p = np.asarray(probs, np.float64)
    if not len(p):
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / len(p))


def fit_temperature(y_true: np.ndarray, logits: np.ndarray) -> float:
    """The temperature T minimising the log-loss of sigmoid(logit / T) (temperature scaling,
    Guo et al. 2017): one parameter, so the ranking (ROC AUC) is unchanged."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_true, np.float64)
    z = np.asarray(logits, np.float64)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return float(np.exp(best.x))


def fit_platt(y_true: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the log-loss of sigmoid(a x logit + b) (Platt scaling on the logit).

    Temperature scaling is a = 1 / T, b = 0: it corrects over- or under-confidence but not a
    shift, and training with balanced class weights shifts every probability towards the
    positive class (it trains as if half the slices bled). ``a`` is kept positive (0.02 to 20),
    so the ranking (ROC AUC) is unchanged."""
    from scipy.optimize import minimize

    y = np.asarray(y_true, np.float64)
    z = np.asarray(logits, np.float64)

    def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = params
        s = a * z + b
        p = 0.5 * (1.0 + np.tanh(0.5 * s))  # sigmoid without overflow
        grad = p - y
        return float(np.mean(np.logaddexp(0.0, s) - y * s)), np.array(
            [float(np.mean(grad * z)), float(np.mean(grad))]
        )

    best = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                    bounds=[(0.02, 20.0), (-20.0, 20.0)])  # fmt: skip
    return float(best.x[0]), float(best.x[1])


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    threshold: float | None = None,
    specificity: float = TARGET_SPECIFICITY,
) -> dict[str, Any]:
    """ROC AUC, sensitivity at ``specificity`` (95 % by default), and report/confusion at
    ``threshold``.

    With ``threshold`` None, the threshold meeting the target specificity on this data is used
    (that is how training picks the model's threshold, on the validation split).
    """
    from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    both = len(np.unique(y_true)) == 2
    auc = float(roc_auc_score(y_true, probs)) if both else float("nan")
    thr_spec, sens_spec, spec = (
        threshold_at_specificity(y_true, probs, specificity)
        if both
        else (0.5, float("nan"), float("nan"))
    )
    used = float(thr_spec if threshold is None else threshold)
    pred = (probs >= used).astype(int)
    report = classification_report(
        y_true,
        pred,
        labels=[0, 1],
        target_names=list(CLASS_NAMES),
        output_dict=True,
        zero_division=0,
    )
    cm = confusion_matrix(y_true, pred, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    return {
        "count": int(len(y_true)),
        "roc_auc": auc,
        "target_specificity": specificity,
        "sensitivity_at_target_specificity": sens_spec,
        "specificity_achieved": spec,
        "threshold_at_target_specificity": thr_spec,
        "threshold": used,
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "classification_report": report,
        "ece": expected_calibration_error(y_true, probs),
        "probability_quantiles": {
            q: float(np.quantile(probs, float(q))) for q in ("0.05", "0.5", "0.95")
        }
        if len(probs)
        else {},
    }


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_metrics(metrics: dict[str, Any], title: str = "hemoscan metrics") -> None:
    """Print metrics as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=title)
    for col in ("class", "precision", "recall", "f1-score", "support"):
        table.add_column(col, justify="right")
    report = metrics["classification_report"]
    for name in (*CLASS_NAMES, "macro avg", "weighted avg"):
        row = report[name]
        table.add_row(
            name,
            *(f"{row[k]:.3f}" for k in ("precision", "recall", "f1-score")),
            f"{row['support']:.0f}",
        )
    console.print(table)
    cm = metrics["confusion_matrix"]
    summary = Table(title="summary", show_header=False)
    summary.add_row("images", str(metrics["count"]))
    summary.add_row("ROC AUC", f"{metrics['roc_auc']:.4f}")
    summary.add_row(
        f"sensitivity at specificity >= {metrics['target_specificity']:.2f}",
        f"{metrics['sensitivity_at_target_specificity']:.4f}",
    )
    summary.add_row("threshold used", f"{metrics['threshold']:.4f}")
    summary.add_row(
        "sensitivity / specificity at it",
        f"{metrics['sensitivity']:.4f} / {metrics['specificity']:.4f}",
    )
    summary.add_row("confusion [tn fp; fn tp]", f"[{cm['tn']} {cm['fp']}; {cm['fn']} {cm['tp']}]")
    if "ece" in metrics:
        summary.add_row(f"expected calibration error ({ECE_BINS} bins)", f"{metrics['ece']:.4f}")
    if "calibration" in metrics:
        cal = metrics["calibration"]
        how = f"temperature {cal['temperature']:.3f}"
        if "shift" in cal:
            how = f"Platt: logit x {cal['scale']:.3f} {cal['shift']:+.3f}"
        summary.add_row(
            "calibration (validation)",
            f"{how}: ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}",
        )
    if "pointing_game" in metrics:
        pg = metrics["pointing_game"]
        summary.add_row(
            "Grad-CAM pointing game",
            f"{pg['hit_rate']:.4f} ({pg['hits']}/{pg['slices']} true-positive slices)",
        )
    console.print(summary)
    # (metrics key, title, first column, the row's count columns, the rate column)
    rate_tables = (
        ("by_kind", "sensitivity by hemorrhage kind (slices containing it)", "kind",
         ("slices", "detected"), "sensitivity"),
        ("by_lesion_area", "sensitivity by lesion area in the slice", "area",
         ("slices", "detected"), "sensitivity"),
        ("normal_by_neighbour", "false positives on normal slices, by neighbour",
         "normal slices", ("slices", "flagged"), "rate"),
        ("mimics", "false positives on normal slices of series with each mimic", "mimic",
         ("slices", "flagged"), "rate"),
    )  # fmt: skip
    for key, title, first, counts, rate in rate_tables:
        if metrics.get(key):
            table = Table(title=title)
            for col in (first, *counts, rate):
                table.add_column(col, justify="right")
            for name, row in metrics[key].items():
                table.add_row(name, *(str(row[c]) for c in counts), _maybe(row["rate"]))
            console.print(table)
    for key, title in (("by_format", "export format"), ("by_level", "level in the head")):
        if metrics.get(key):
            table = Table(title=f"by {title} (at the stored threshold)")
            for col in (title.split()[0], "slices", "hemorrhage", "ROC AUC", "sens", "spec"):
                table.add_column(col, justify="right")
            for name, row in metrics[key].items():
                table.add_row(name, str(row["slices"]), str(row["hemorrhage"]),
                              *(_maybe(row[k]) for k in ("roc_auc", "sensitivity", "specificity")))  # fmt: skip
            console.print(table)
