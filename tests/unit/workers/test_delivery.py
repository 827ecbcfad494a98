"""workers.delivery: split on redelivery, poison, backoff and delivery counting (no services)."""

from __future__ import annotations

import pytest

from workers.delivery import (
    DELIVERY_TTL,
    Action,
    backoff,
    count_delivery,
    decide,
    delivery_key,
)

KEYS = [f"k{i}" for i in range(7)]


def test_a_first_delivery_is_scored():
    assert decide(KEYS, 1, 3).action is Action.SCORE


def test_a_redelivered_batch_is_split_in_two_halves_that_cover_it():
    decision = decide(KEYS, 2, 3)
    assert decision.action is Action.SPLIT and decision.deaths == 1
    first, second = decision.parts
    assert first + second == KEYS and abs(len(first) - len(second)) <= 1


def test_an_image_alone_is_retried_until_it_has_killed_max_deliveries_workers():
    assert decide(["k"], 2, 3).action is Action.SCORE
    assert decide(["k"], 3, 3).action is Action.SCORE
    poison = decide(["k"], 4, 3)
    assert poison.action is Action.POISON and poison.deaths == 3


def test_isolating_one_image_of_a_batch_takes_a_bounded_number_of_deliveries():
    """Simulate a batch of 128 keys with one image that kills every worker it meets."""
    bad, max_deliveries = "k77", 3
    queue, deaths, poisoned = [[f"k{i}" for i in range(128)]], 0, []
    while queue:
        batch, starts = queue.pop(), 0
        while True:
            starts += 1
            decision = decide(batch, starts, max_deliveries)
            if decision.action is Action.SPLIT:
                queue.extend(decision.parts)
                break
            if decision.action is Action.POISON:
                poisoned.extend(batch)
                break
            if bad not in batch:
                break  # scored
            deaths += 1  # the worker dies; the broker delivers it again
    assert poisoned == [bad]
    assert deaths == 7 + max_deliveries  # one per halving (log2 128) and the poison's own


@pytest.mark.parametrize(
    ("retries", "seconds"), [(0, 2), (1, 4), (2, 8), (4, 32), (5, 60), (9, 60)]
)
def test_backoff_doubles_up_to_a_minute(retries, seconds):
    assert backoff(retries) == seconds


class FakeRedis:
    """incr/expire of a Redis client, in a dict (the only two calls the counter makes)."""

    def __init__(self, fail: bool = False) -> None:
        self.values: dict[str, int] = {}
        self.ttl: dict[str, int] = {}
        self.fail = fail

    def incr(self, name: str) -> int:
        if self.fail:
            raise ConnectionError("redis is away")
        self.values[name] = self.values.get(name, 0) + 1
        return self.values[name]

    def expire(self, name: str, time: int) -> bool:
        self.ttl[name] = time
        return True


def test_each_message_counts_its_own_starts():
    redis = FakeRedis()
    assert [count_delivery(redis, "t1", 0) for _ in range(3)] == [1, 2, 3]
    assert count_delivery(redis, "t1", 1) == 1, "a retry is a new message"
    assert count_delivery(redis, "t2", 0) == 1
    assert redis.ttl[delivery_key("t1", 0)] == DELIVERY_TTL


def test_an_unreachable_counter_scores_the_batch_as_a_first_delivery():
    assert count_delivery(FakeRedis(fail=True), "t1", 0) == 1
    assert count_delivery(None, "t1", 0) == 1
