"""Start real hemoscan processes (workers, Flower, the CLI) against the test services."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEMOSCAN = [sys.executable, "-m", "hemoscan.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*HEMOSCAN, *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"hemoscan {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return proc


class Worker:
    """A `hemoscan worker` process with its own log file."""

    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path, concurrency: int = 1):
        self.name = name
        self.log_path = log_dir / f"{name.split('@')[0]}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*HEMOSCAN, "worker", f"--name={name}", f"--concurrency={concurrency}"],
            env=dict(env),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        """Ready = the pool processes loaded their model and the worker consumes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if " ready." in text and "loaded model" in text:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited early:\n{text[-3000:]}")
            time.sleep(0.3)
        raise AssertionError(f"worker {self.name} not ready in {timeout}s:\n{self.log()[-3000:]}")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in {self.name}'s log:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def pool_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return int(self.proc.returncode)


@contextmanager
def workers(
    env: Mapping[str, str], log_dir: Path, count: int = 2, prefix: str = "w"
) -> Iterator[list[Worker]]:
    started = [Worker(f"{prefix}{i + 1}@hemoscan-test", env, log_dir) for i in range(count)]
    try:
        for w in started:
            w.wait_ready()
        yield started
    finally:
        for w in started:
            w.stop()


@contextmanager
def flower(env: Mapping[str, str], log_dir: Path) -> Iterator[str]:
    """`hemoscan flower` on a free port; yields its base URL once it answers."""
    import urllib.error
    import urllib.request

    port = free_port()
    log = (log_dir / "flower.log").open("w")
    proc = subprocess.Popen(
        [*HEMOSCAN, "flower", f"--port={port}"],
        env=dict(env),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthcheck", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers (even 401 means it is up)
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "flower did not start:\n" + (log_dir / "flower.log").read_text()
                    ) from None
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        log.close()


def flower_tasks(url: str, password: str = "flower-test-pw") -> tuple[dict, list[str]]:
    """What Flower shows of the tasks it saw: its task list and each task's details (the
    arguments and results included), as the API returns them."""
    import base64
    import json
    import urllib.request

    auth = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()

    def get(path: str) -> str:
        request = urllib.request.Request(f"{url}{path}", headers={"Authorization": auth})
        return urllib.request.urlopen(request, timeout=10).read().decode()

    tasks = json.loads(get("/api/tasks"))
    return tasks, [get(f"/api/task/info/{task_id}") for task_id in tasks]
