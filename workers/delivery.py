"""The task's decisions about one delivery, as pure functions (unit-tested without Celery).

Delivery is at least once: a batch whose pool process died is delivered again, and so is one
whose acknowledgement was lost or whose visibility timeout ran out. These functions say what a
delivery does: score the batch, split it to isolate an image that kills its worker, or give
that image up as ``poison``; and how long a transient failure waits before its retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

log = logging.getLogger(__name__)

# How long a delivery count is kept: longer than any batch waits in a queue.
DELIVERY_TTL = 7 * 24 * 3600
BACKOFF_CAP = 60


class Action(Enum):
    SCORE = "score"
    SPLIT = "split"
    POISON = "poison"


@dataclass(frozen=True)
class Decision:
    action: Action
    parts: tuple[list[str], ...] = ()
    deaths: int = 0  # deliveries before this one that never finished


def decide(keys: list[str], deliveries: int, max_deliveries: int) -> Decision:
    """What the ``deliveries``-th start of a batch of ``keys`` does.

    A first delivery is scored. A batch started before (its worker died, or the broker handed
    it out again) is split in two, each half a new message, until the image that kills the
    worker is alone; a single image started more than ``max_deliveries`` times is ``poison``.
    """
    if deliveries <= 1:
        return Decision(Action.SCORE)
    if len(keys) > 1:
        half = len(keys) // 2
        return Decision(Action.SPLIT, parts=(keys[:half], keys[half:]), deaths=deliveries - 1)
    if deliveries > max_deliveries:
        return Decision(Action.POISON, deaths=deliveries - 1)
    return Decision(Action.SCORE, deaths=deliveries - 1)


def backoff(retries: int) -> int:
    """Seconds before retry number ``retries + 1``: 2, 4, 8, ... capped at a minute."""
    return int(min(2 ** (retries + 1), BACKOFF_CAP))


class Counter(Protocol):
    """The part of a Redis client the delivery count uses."""

    def incr(self, name: str) -> int: ...
    def expire(self, name: str, time: int) -> object: ...


def delivery_key(task_id: str, retries: int) -> str:
    """One count per message: a retry is a new message of the same task."""
    return f"hemoscan:deliveries:{task_id}:{retries}"


def count_delivery(client: Counter | None, task_id: str, retries: int) -> int:
    """How many times this message has started, this start included (1 without a counter).

    Counting is a safety net: if the counter cannot be reached the batch is scored as a first
    delivery rather than not at all.
    """
    if client is None:
        return 1
    key = delivery_key(task_id, retries)
    try:
        count = int(client.incr(key))
        client.expire(key, DELIVERY_TTL)
        return count
    except Exception:
        log.warning("could not count deliveries of a batch", exc_info=True)
        return 1
