"""The garbage collector under the app (chat/collector.py): what survives a full
collection is frozen, so the next one walks only what came since; everything is
unfrozen again now and then, and when the app stops."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from chat.collector import Collector


@pytest.fixture
def clean_collector():
    yield
    gc.unfreeze()


async def test_what_survives_a_full_collection_is_frozen_out_of_the_next_ones_sight(
    clean_collector,
):
    collector = Collector()
    collector.start()
    try:
        frozen = gc.get_freeze_count()
        kept = [[n] for n in range(5000)]  # a crowd's long-lived objects
        gc.collect()
        await asyncio.sleep(0)  # the freeze runs on the loop's next turn
        assert len(gc.get_objects(generation=2)) < 1000
        assert gc.get_freeze_count() >= frozen + 5000
        assert all(gc.is_tracked(one) for one in kept)
    finally:
        await collector.close()
    assert gc.get_freeze_count() == 0


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


async def test_frozen_objects_are_unfrozen_now_and_then_so_that_their_cycles_are_collected(
    clean_collector,
):
    collector = Collector(unfreeze_seconds=0.3)
    collector.start()
    try:
        node = Node()
        gc.collect()
        await asyncio.sleep(0)  # frozen with everything else that survived
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is not None  # frozen: out of the collector's sight
        await asyncio.sleep(0.4)
        gc.collect()
        assert gone() is None
    finally:
        await collector.close()


async def test_the_plain_path_freezes_only_at_start_up(clean_collector):
    collector = Collector(fast=False)
    collector.start()
    try:
        frozen = gc.get_freeze_count()
        kept = [[n] for n in range(5000)]
        gc.collect()
        await asyncio.sleep(0)
        assert gc.get_freeze_count() < frozen + 5000
        assert len(gc.get_objects(generation=2)) >= 5000
        assert len(kept) == 5000
    finally:
        await collector.close()
