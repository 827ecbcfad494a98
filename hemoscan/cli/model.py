"""``hemoscan`` sub-commands for the model: phantoms, train, evaluate, predict, model-bench.

Registration imports nothing heavy: TensorFlow is imported inside the handlers only (see
hemoscan/cli/__init__.py for why).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hemoscan.errors import HemoscanError


class ModelCommandError(HemoscanError):
    """A user error in a model command (bad path, bad option)."""


def _existing_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a folder: {value}")
    return path


def _existing_path(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {value}")
    return path


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 < number < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def _share(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def _filters(value: str) -> tuple[int, ...]:
    try:
        filters = tuple(int(v) for v in value.split(","))
    except ValueError:
        filters = ()
    if len(filters) < 2 or min(filters) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected two or more positive integers separated by commas, got {value!r}"
        )
    return filters


def _model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model .keras (default: HEMOSCAN_MODEL_PATH, else the demo model)",
    )


def _model(args: argparse.Namespace) -> Path:
    """--model, else the configured model (HEMOSCAN_MODEL_PATH, default: the demo model)."""
    if args.model is not None:
        return Path(args.model)
    from hemoscan.settings import get_settings

    return get_settings().model_path


def register(subparsers) -> None:
    """Add the model commands to the ``hemoscan`` argument parser."""
    p = subparsers.add_parser(
        "phantoms",
        help="write synthetic head-CT phantoms: series (skull base to vertex) or single slices",
        description="Write synthetic head CT in Hounsfield units with hemorrhages "
        "(intraparenchymal, subdural, epidural, subarachnoid, intraventricular) and their exact "
        "masks. --series N: N series from the skull base to the vertex, one file per slice "
        "(DICOM series or PNG), lesions with 3-D extent, labels per slice and per series. "
        "--count N: N single slices (the 2-D mode), about half with hemorrhage. The default "
        "generator simulates the scanner (projection, quantum noise, beam hardening, filtered "
        "back-projection, field of view, head holder) and normal hyperdense mimics "
        "(calcifications, dense venous sinuses); --generator simple writes the earlier, "
        "simpler 2-D phantoms. Writes labels.csv (id,hemorrhage), masks/<id>.png, and for the "
        "CT generator slices.csv and series.csv. Phantoms are for development and tests; "
        "models trained on them are not clinically valid.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--count", type=_positive_int, help="number of single slices (2-D mode)")
    what.add_argument("--series", type=_positive_int, help="number of series (volumes)")
    p.add_argument("--seed", required=True, type=int, help="random seed (same seed, same files)")
    p.add_argument(
        "--format",
        default="dcm",
        choices=("dcm", "png", "mixed"),
        dest="fmt",
        help="dcm: CT DICOM in HU; png: PNG exports (CT generator: 8/16-bit of a random window "
        "or 16-bit HU+1024, per series; simple: 16-bit brain window); mixed: alternate "
        "(default: dcm)",
    )
    p.add_argument(
        "--size",
        default=None,
        type=_positive_int,
        help="matrix size in pixels (default: 512 for the CT generator, 256 for simple)",
    )
    p.add_argument(
        "--generator",
        default="ct",
        choices=("ct", "simple"),
        help="ct: anatomy + scanner simulation (default); simple: the earlier 2-D phantoms",
    )
    p.add_argument(
        "--variant",
        default="train",
        choices=("train", "heldout"),
        help="CT generator configuration: train, or heldout (other geometry and scanners, "
        "never used for training; see hybrid_model/synth/config.py) (default: train)",
    )
    p.add_argument(
        "--slice-mm",
        default=None,
        type=float,
        help="slice thickness in mm (default: drawn per series, mostly 5 mm)",
    )
    p.add_argument(
        "--workers",
        default=None,
        type=_positive_int,
        help="processes (default: every core; the files do not depend on it)",
    )
    p.set_defaults(func=_phantoms)

    p = subparsers.add_parser(
        "train",
        help="train the hybrid CNN+LSTM+GRU model on a labelled folder",
        description="Train on a folder with labels.csv (id,hemorrhage) or class subfolders "
        "(0/ 1/ or normal/ hemorrhage/). Augments the training split, early-stops on "
        "validation ROC AUC, then prints and writes MODEL.metrics.json.",
    )
    p.add_argument("--data", required=True, type=_existing_dir, help="labelled image folder")
    p.add_argument("--out", required=True, type=Path, help="output model path (.keras)")
    p.add_argument("--epochs", default=15, type=_positive_int, help="maximum epochs (default: 15)")
    p.add_argument("--batch-size", default=32, type=_positive_int, help="batch size (default: 32)")
    p.add_argument(
        "--val-split", default=0.2, type=_fraction, help="validation fraction (default: 0.2)"
    )
    p.add_argument("--seed", default=0, type=int, help="random seed (default: 0)")
    p.add_argument(
        "--notes",
        default=None,
        help="text stored as the model's training_data (default: a summary of --data)",
    )
    p.add_argument(
        "--learning-rate", default=1e-3, type=float, help="Adam learning rate (default: 0.001)"
    )
    p.add_argument(
        "--patience",
        default=4,
        type=_positive_int,
        help="epochs without a better validation AUC before stopping (default: 4)",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this .keras model's weights instead of a fresh network",
    )
    p.add_argument(
        "--pooled-blocks",
        type=int,
        default=None,
        help="conv blocks followed by 2x2 max pooling (default 2: last_conv at 1/4 of the input)",
    )
    p.add_argument(
        "--row-steps",
        type=_positive_int,
        default=8,
        help="recurrent steps: last_conv is read as this many bands of rows, each max-pooled "
        "(default 8; it must divide last_conv's rows, e.g. 64 for 256 x 256 input to read every "
        "row)",
    )
    p.add_argument(
        "--cam-weight",
        type=float,
        default=0.0,
        help="Grad-CAM guidance: weight of a pointing loss that pulls the model's Grad-CAM peak "
        "onto the lesion masks in DATA/masks/ (default 0: off; the demo used 0.25 with "
        "--init and --learning-rate 0.0002; phantoms have masks)",
    )
    p.add_argument(
        "--seg-weight",
        type=float,
        default=0.0,
        help="lesion-map supervision: weight of a per-cell cross-entropy of a training-only "
        "1x1 head on last_conv against the masks in DATA/masks/ (dense supervision; the saved "
        "network is unchanged; default 0: off; the demo's stage 7 used 1.0)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="with --cam-weight or --seg-weight: start no epoch that would end after this many "
        "minutes of training (default: no limit)",
    )
    p.add_argument(
        "--filters",
        type=_filters,
        default=None,
        help="conv filters per block, comma-separated (default 8,16,32,64); with --init a "
        "wider network starts from a narrower one with its function unchanged",
    )
    p.add_argument(
        "--context-blocks",
        type=int,
        choices=range(0, 5),
        default=0,
        metavar="{0..4}",
        help="residual dilated blocks after the last conv block, widening what each cell of "
        "last_conv sees from 26 to 26 + 16 x (2^N - 1) pixels (default 0); with --init they "
        "start as the identity, so training begins from the initial network's function",
    )
    p.add_argument(
        "--pointing-weight",
        type=float,
        default=1.0,
        help="with --cam-weight or --seg-weight: the epoch kept is the best by 3 x validation "
        "ROC AUC + this x the validation pointing game (default 1; 0 keeps the best ROC AUC, "
        "for a network whose maps already point)",
    )
    p.add_argument(
        "--pointing-floor",
        type=_share,
        default=None,
        help="with --cam-weight or --seg-weight: keep only an epoch whose validation pointing "
        "game reaches this (e.g. 0.85 with --pointing-weight 0: the best ROC AUC among the "
        "epochs whose maps still point; the start is kept when none does)",
    )
    p.add_argument(
        "--framing",
        choices=("letterbox", "head"),
        default="letterbox",
        help="what of each slice the network sees: letterbox, the whole image in a square; "
        "head, a square around the head (1.1 x its long side, zoom at most 2x), so a small "
        "bleed keeps more pixels. Stored in the model's metadata; scoring frames slices the "
        "same way (default: letterbox; with --init, the initial model's framing is not "
        "inherited)",
    )
    p.add_argument(
        "--grey-share",
        type=_share,
        default=0.0,
        help="share of three-window (DICOM, HU PNG) training slices redrawn per batch as 8-bit "
        "grey exports of a random window, as public PNG sets hold them (default 0; the demo "
        "used 0.4)",
    )
    p.add_argument(
        "--target-specificity",
        type=_fraction,
        default=0.95,
        help="the stored threshold is the lowest reaching this specificity on the calibrated "
        "validation split (default 0.95; a triage queue that must miss less takes less)",
    )
    p.add_argument(
        "--base-weight",
        type=float,
        default=1.0,
        help="CT phantom folders: loss weight of skull-base slices (level < 0.3) relative to "
        "the others of their class, where the demo model is weakest (default 1: off)",
    )
    p.add_argument(
        "--small-weight",
        type=float,
        default=1.0,
        help="CT phantom folders: loss weight of hemorrhage slices with under 100 mm2 of lesion "
        "relative to the other hemorrhage slices (default 1: off)",
    )
    p.add_argument(
        "--calibration",
        choices=("platt", "temperature"),
        default="platt",
        help="calibration fitted on the validation split and folded into the logit layer: "
        "platt (logit x a + c: corrects the shift that class weights give every probability; "
        "the default) or temperature (logit / T)",
    )
    p.add_argument(
        "--cam-temperature",
        type=float,
        default=None,
        help="softmax temperature of the pointing loss (default: 10)",
    )
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "evaluate",
        help="metrics and Grad-CAM pointing game of a model on a labelled folder",
        description="Classification report, ROC AUC, confusion matrix, sensitivity and "
        "specificity at the model's threshold (and sensitivity at 95 % specificity on this "
        "data), expected calibration error; with masks/ present, the Grad-CAM pointing game "
        "(peak inside the lesion mask, 2 px tolerance); on CT phantom series (slices.csv), "
        "sensitivity by hemorrhage kind and false positives by mimic.",
    )
    p.add_argument("--data", required=True, type=_existing_dir, help="labelled image folder")
    _model_option(p)
    p.add_argument("--json", action="store_true", help="also print the metrics as one JSON object")
    p.add_argument("--json-out", type=Path, default=None, help="also write the metrics to FILE")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser(
        "threshold",
        help="choose a model's threshold again on labelled validation data",
        description="Score a labelled folder (validation data the model was not trained on, "
        "and not the data it will be judged on) and write the model again with the lowest "
        "threshold that meets --specificity there. The weights, and so the model's version "
        "and a series stage tied to it, are unchanged; the metadata records the data, the "
        "date and the figures (operating_point).",
    )
    p.add_argument("--data", required=True, type=_existing_dir, help="labelled image folder")
    p.add_argument("--out", required=True, type=Path, help="output model path (.keras)")
    _model_option(p)
    p.add_argument(
        "--specificity",
        default=0.95,
        type=_fraction,
        help="target specificity on DATA (default: 0.95)",
    )
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="first fit Platt scaling on DATA and fold it into the logit layer (the weights "
        "change, so the version does, and a series stage must be trained again); use when the "
        "validation split's calibration does not carry to fresh data",
    )
    p.set_defaults(func=_threshold)

    p = subparsers.add_parser(
        "train-series",
        help="train the series stage (a GRU over the slices of a series in z order)",
        description="Score every slice of DATA with the slice network (--model), then train a "
        "bidirectional GRU over each series' slices in z order (their evidence vectors, "
        "logits and spacing): a context-refined probability per slice and a series "
        "probability (the largest). DATA must hold series the slice network never saw "
        "(e.g. fresh `hemoscan phantoms --series N`); series come from slices.csv or the "
        "DICOM headers. Prints max-of-slices and the series stage side by side on the "
        "validation series; the model is phantom-trained when DATA is.",
    )
    p.add_argument("--data", required=True, type=_existing_dir, help="labelled series folder")
    p.add_argument("--out", required=True, type=Path, help="output series model (.keras)")
    p.add_argument("--model", type=Path, default=None, help="slice network (default: demo)")
    p.add_argument("--epochs", default=60, type=_positive_int, help="maximum epochs (60)")
    p.add_argument("--val-split", default=0.2, type=_fraction, help="validation series share")
    p.add_argument("--seed", default=0, type=int, help="random seed (default: 0)")
    p.set_defaults(func=_train_series)

    p = subparsers.add_parser(
        "evaluate-series",
        help="series-level ROC AUC: max-of-slices next to the series stage",
        description="Series ROC AUC and slice ROC AUC of the slice network alone "
        "(max-of-slices) and with the series stage, and the series stage's sensitivity and "
        "specificity at its stored threshold, on a labelled folder of series.",
    )
    p.add_argument("--data", required=True, type=_existing_dir, help="labelled series folder")
    p.add_argument("--series-model", type=Path, default=None,
                   help="series stage (default: the demo series stage)")  # fmt: skip
    p.add_argument("--model", type=Path, default=None, help="slice network (default: demo)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the figures to FILE")
    p.set_defaults(func=_evaluate_series)

    p = subparsers.add_parser(
        "predict",
        help="score images (files or folders) with Grad-CAM heatmaps",
        description="Score DICOM/PNG/JPEG slices. Folders are walked recursively; a file is "
        "an image by its suffix (.dcm .dicom .png .jpg .jpeg) or by its first bytes (PACS "
        "exports such as IM00001 have no suffix); masks/ folders are skipped. Prints a table, or "
        "with --json one JSON object per image. A file that cannot be read or decoded gets one "
        "row with an error reason and a message, and the others are still scored; a slice that "
        "is not head CT gets reason not_head (HEMOSCAN_HEAD_GATE=false scores it anyway).",
        epilog="Exit status: 0 when at least one image was scored, even if others failed; 1 when "
        "none was (no image found, every file unreadable) or the model is missing.",
    )
    p.add_argument("paths", nargs="+", type=_existing_path, help="image files or folders")
    _model_option(p)
    p.add_argument(
        "--heatmaps", type=Path, default=None, help="write overlay PNG + raw .npy maps here"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.add_argument("--batch-size", default=16, type=_positive_int, help="images per model call")
    p.set_defaults(func=_predict)

    p = subparsers.add_parser(
        "model-bench",
        help="images/s of forward-only vs forward+Grad-CAM at batch 1, 8, 32",
        description="Throughput of the model with and without Grad-CAM (target at batch 32: "
        "forward+Grad-CAM >= 0.85x forward-only).",
    )
    _model_option(p)
    p.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--seconds", default=3.0, type=float, help="time per measurement (default: 3)")
    p.set_defaults(func=_bench)


def _phantoms(args) -> int:
    import time

    if args.generator == "simple":
        if args.series:
            raise ModelCommandError("--generator simple writes single slices: use --count")
        from hybrid_model.phantoms import generate

        records = generate(args.out, args.count, args.seed, fmt=args.fmt, size=args.size or 256)
        positives = sum(r["hemorrhage"] for r in records)
        print(f"wrote {len(records)} phantom slices ({positives} with hemorrhage) to {args.out}")
        return 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from hybrid_model.synth.write import generate_series

    size = args.size or 512
    if size < 32:
        raise ModelCommandError(f"--size must be at least 32 for the CT generator, got {size}")
    count = args.series or args.count
    started = time.perf_counter()
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("series" if args.series else "slices", total=count)
        records = generate_series(
            args.out,
            count,
            args.seed,
            fmt=args.fmt,
            size=size,
            variant=args.variant,
            slice_mm=args.slice_mm,
            single=bool(args.count),
            workers=args.workers,
            progress=lambda _n: bar.advance(task),
        )
    seconds = time.perf_counter() - started
    positives = sum(r["hemorrhage"] for r in records)
    series = {r["series"] for r in records}
    flagged = {r["series"] for r in records if r["hemorrhage"]}
    what = f"{len(series)} series, " if args.series else ""
    print(
        f"wrote {what}{len(records)} phantom slices ({positives} with hemorrhage"
        + (f"; {len(flagged)} series with hemorrhage" if args.series else "")
        + f") to {args.out} in {seconds:.1f} s ({len(records) / seconds:.1f} slices/s, "
        f"variant {args.variant}); synthetic phantoms, NOT patient data"
    )
    return 0


def _train(args) -> int:
    if args.out.suffix != ".keras":
        raise ModelCommandError(f"--out must end in .keras: {args.out}")
    from hybrid_model.network import RowStepsError
    from hybrid_model.train import metrics_path, train

    try:
        metrics = train(
            args.data,
            args.out,
            args.epochs,
            args.batch_size,
            args.val_split,
            args.seed,
            training_data=args.notes,
            initial_model=args.init,
            learning_rate=args.learning_rate,
            patience=args.patience,
            pooled_blocks=args.pooled_blocks,
            row_steps=args.row_steps,
            cam_weight=args.cam_weight,
            seg_weight=args.seg_weight,
            max_minutes=args.max_minutes,
            cam_temperature=args.cam_temperature,
            filters=args.filters,
            grey_share=args.grey_share,
            target_specificity=args.target_specificity,
            base_weight=args.base_weight,
            small_weight=args.small_weight,
            calibration=args.calibration,
            context_blocks=args.context_blocks,
            framing=args.framing,
            pointing_weight=args.pointing_weight,
            pointing_floor=args.pointing_floor,
        )
    except RowStepsError as exc:  # raised before any data is read
        raise ModelCommandError(f"--row-steps: {exc}") from None
    print(
        f"saved {args.out} and {metrics_path(args.out)} "
        f"(validation ROC AUC {metrics['roc_auc']:.4f})"
    )
    return 0


def _evaluate(args) -> int:
    from hybrid_model.evaluate import evaluate

    metrics = evaluate(args.data, _model(args))
    if args.json:
        print(json.dumps(metrics, sort_keys=True, default=float))
    if args.json_out:
        args.json_out.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))
    return 0


def _threshold(args) -> int:
    if args.out.suffix != ".keras":
        raise ModelCommandError(f"--out must end in .keras: {args.out}")
    from hybrid_model.operating_point import rethreshold

    rethreshold(
        args.data,
        _model(args),
        args.out,
        specificity=args.specificity,
        recalibrate=args.recalibrate,
    )
    return 0


def _train_series(args) -> int:
    if args.out.suffix != ".keras":
        raise ModelCommandError(f"--out must end in .keras: {args.out}")
    from hybrid_model.series import train_series

    meta = train_series(args.data, args.out, _model(args), epochs=args.epochs,
                        val_split=args.val_split, seed=args.seed)  # fmt: skip
    stage = meta["metrics"]["validation"]["series stage"]
    print(f"saved {args.out} (validation series ROC AUC {stage['series_roc_auc']:.4f})")
    return 0


def _evaluate_series(args) -> int:
    from hybrid_model.io import DEMO_SERIES_MODEL_PATH
    from hybrid_model.series import evaluate_series

    figures = evaluate_series(args.data, args.series_model or DEMO_SERIES_MODEL_PATH, _model(args))
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2, sort_keys=True, default=float))
    return 0


def _predict(args) -> int:
    from hybrid_model.predict import expand_paths, predict_paths

    files = expand_paths(args.paths)
    if not files:
        raise ModelCommandError(f"no image files found in {' '.join(map(str, args.paths))}")
    from hemoscan.settings import get_settings

    rows = predict_paths(
        files,
        _model(args),
        args.heatmaps,
        batch_size=args.batch_size,
        head_gate=get_settings().head_gate,
    )
    if args.json:
        scored = 0
        for row in rows:
            scored += "error" not in row
            print(json.dumps(row), flush=True)
        return 0 if scored else 1
    return _print_table(rows, len(files))


def _print_table(rows, total: int) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    table = Table(title="hemoscan predict")
    for col in ("image", "probability", "label", "peak (row, col)", "heatmap"):
        table.add_column(col)
    scored, note = 0, ""
    progress_console = Console(stderr=True)  # stdout carries only the table
    with Progress(
        console=progress_console, transient=True, disable=not progress_console.is_terminal
    ) as progress:
        task = progress.add_task("scoring", total=total)
        for row in rows:
            progress.advance(task)
            note = row.get("model_note", note)
            if "error" in row:
                table.add_row(row["image"], "-", f"error: {row['error']}", "-", row["message"])
                continue
            scored += 1
            table.add_row(
                row["image"],
                f"{row['probability']:.4f}",
                row["label"],
                f"{row['peak'][0]}, {row['peak'][1]}" if row["peak"] else "none (all-zero map)",
                row["heatmap"] or "-",
            )
    console = Console()
    console.print(table)
    console.print(note)
    return 0 if scored else 1


def _bench(args) -> int:
    from hybrid_model.bench import run_bench

    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError as exc:
        raise ModelCommandError(f"--batches must be integers: {args.batches}") from exc
    run_bench(_model(args), batches, args.seconds)
    return 0
