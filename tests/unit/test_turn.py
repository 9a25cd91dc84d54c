"""Turn: a per-call lock that can also be taken synchronously."""

from __future__ import annotations

import asyncio

import pytest

from callcenter.pbx.turn import Turn


async def test_taken_synchronously_only_when_free_and_nobody_waits() -> None:
    turn = Turn()
    assert turn.try_take() and turn.locked()
    assert not turn.try_take()
    waiter = asyncio.ensure_future(turn.take())
    await asyncio.sleep(0)
    turn.release()  # handed to the waiter: still taken
    assert turn.locked() and not turn.try_take()
    await waiter
    turn.release()
    assert not turn.locked() and turn.try_take()


async def test_waiters_get_the_turn_in_arrival_order() -> None:
    turn = Turn()
    order: list[int] = []

    async def batch(n: int) -> None:
        async with turn:
            order.append(n)
            await asyncio.sleep(0.001)

    assert turn.try_take()
    tasks = [asyncio.ensure_future(batch(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert not turn.try_take()  # waiters first, even between two holders
    turn.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and not turn.locked()


async def test_a_cancelled_waiter_never_keeps_the_turn() -> None:
    turn = Turn()
    assert turn.try_take()
    first = asyncio.ensure_future(turn.take())
    second = asyncio.ensure_future(turn.take())
    await asyncio.sleep(0)
    first.cancel()  # cancelled while waiting
    await asyncio.sleep(0)
    turn.release()
    await second  # skipped the cancelled one
    assert first.cancelled()
    # handed the turn, then cancelled before it resumed: passes it on
    third = asyncio.ensure_future(turn.take())
    await asyncio.sleep(0)
    turn.release()
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    assert not turn.locked()


def test_release_of_a_free_turn_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        Turn().release()
