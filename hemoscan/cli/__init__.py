"""The `hemoscan` command line.

Each area of the project registers its own sub-commands (``register(subparsers)``) so this
module stays a thin dispatcher. Registration must never import TensorFlow: `hemoscan --help`,
the producer and the database commands run on small CPU nodes, and TensorFlow must never be
initialised in a process that later forks Celery workers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from hemoscan import __version__

# Modules that expose ``register(subparsers)``; order is the order shown in --help.
COMMAND_MODULES = (
    "hemoscan.cli.scan",
    "hemoscan.cli.model",
    "hemoscan.cli.worker",
    "hemoscan.cli.db",
)

DISCLAIMER = (
    "hemoscan is a research and triage tool. Its scores are not a diagnosis and must not be "
    "used as one."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hemoscan",
        description=(
            "Batch screening of head-CT archives for intracranial hemorrhage with a hybrid "
            "CNN + LSTM + GRU classifier and Grad-CAM heatmaps. " + DISCLAIMER
        ),
        epilog="Settings come from HEMOSCAN_* environment variables (see README). "
        "Run 'hemoscan COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"hemoscan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area has no commands yet
                continue
            raise
        module.register(subparsers)
    return parser


def configure_logging(verbose: bool = False) -> None:
    """Our own loggers at INFO (DEBUG with -v); third-party libraries only when they warn."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("hemoscan", "hybrid_model", "schema", "producer", "workers"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) hides the real output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from hemoscan.errors import HemoscanError
    from hybrid_model.errors import ModelError

    try:
        return int(args.func(args) or 0)
    except (HemoscanError, ModelError) as exc:
        print(f"hemoscan: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `hemoscan results JOB --csv | head`: the reader has gone
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("hemoscan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
