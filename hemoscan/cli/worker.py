"""`hemoscan worker` and `hemoscan flower`: start a GPU worker or the monitoring UI."""

from __future__ import annotations

import argparse
import os
import socket

from hemoscan.errors import ConfigurationError
from hemoscan.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    worker = subparsers.add_parser(
        "worker",
        help="start a Celery worker that scores batches (one per GPU)",
        description="Start a worker consuming the hemoscan queue. Run one worker per GPU with "
        "--gpu N (sets CUDA_VISIBLE_DEVICES) and --concurrency 1; on a CPU-only node, "
        "concurrency is the number of model processes. Equivalent to "
        "'celery -A workers.celery_app worker -Q hemoscan'.",
    )
    worker.add_argument("--concurrency", type=int, default=1, help="pool processes (default 1)")
    worker.add_argument("--queues", default=None, help="queues to consume (default: setting)")
    worker.add_argument("--gpu", type=int, default=None, help="GPU index for this worker")
    worker.add_argument("--name", default=None, help="node name (default hemoscan-<gpu>@host)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=_worker)

    flower = subparsers.add_parser(
        "flower",
        help="start Flower (task rates, runtimes, workers) with basic auth",
        description="Start Flower on HEMOSCAN_FLOWER_PORT for the configured broker, with "
        "basic auth from HEMOSCAN_FLOWER_USER / HEMOSCAN_FLOWER_PASSWORD (required).",
    )
    flower.add_argument("--port", type=int, default=None)
    flower.add_argument("--address", default="127.0.0.1", help="listen address")
    flower.set_defaults(func=_flower)


def worker_argv(args: argparse.Namespace) -> list[str]:
    settings = get_settings()
    suffix = f"gpu{args.gpu}" if args.gpu is not None else "cpu"
    name = args.name or f"hemoscan-{suffix}-{os.getpid()}@{socket.gethostname()}"
    return [
        "worker",
        f"--queues={args.queues or settings.queue}",
        f"--concurrency={args.concurrency}",
        "--pool=prefork",
        f"--hostname={name}",
        f"--loglevel={args.loglevel}",
        "--task-events",
        "--without-gossip",
        "--without-mingle",
    ]


def _worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.distributed:
        raise ConfigurationError(
            "HEMOSCAN_BROKER_URL is not set: a worker needs a broker "
            "(without one, 'hemoscan scan' scores in-process)"
        )
    if args.gpu is not None:
        # Before anything imports TensorFlow: this worker's processes see only that GPU.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    if settings.metrics_port:
        os.environ.setdefault("HEMOSCAN_METRICS_PORT", str(settings.metrics_port))
    from workers.celery_app import app

    app.worker_main(worker_argv(args))
    return 0


def flower_argv(port: int, address: str) -> list[str]:
    settings = get_settings()
    if settings.flower_password is None:
        raise ConfigurationError(
            "HEMOSCAN_FLOWER_PASSWORD is not set: Flower is never started without basic auth"
        )
    auth = f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
    return ["flower", f"--port={port}", f"--address={address}", f"--basic-auth={auth}"]


def _flower(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.distributed:
        raise ConfigurationError("HEMOSCAN_BROKER_URL is not set: Flower watches a broker")
    from workers.celery_app import app

    app.start(flower_argv(args.port or settings.flower_port, args.address))
    return 0
