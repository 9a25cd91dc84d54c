"""What the AMI and ESL clients share about keeping a PBX link: reconnect backoff and hooks."""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any


def backoff_delay(attempt: int, minimum: float, maximum: float, rnd: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: several controllers (or a restart storm) must not hit
    the PBX in lockstep. ``attempt`` 0 is the first retry."""
    delay = min(maximum, minimum * 2 ** min(attempt, 30))
    return delay * (0.5 + rnd() / 2)


async def call_hooks(hooks: Iterable[Callable[..., Any]], *args: Any, log: logging.Logger, what: str) -> None:
    """Run each hook (sync or async) in order; one that fails is logged and the rest still run."""
    for hook in hooks:
        try:
            result = hook(*args)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s hook %r failed", what, hook)
