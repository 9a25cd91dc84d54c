"""Which supervisor legs are spying on which calls right now, from the PBX's own events.

A spy is started with an Originate (the supervisor's phone rings first); the spying channel's
name is only known once the PBX reports ``SpyStarted``, and stopping a spy means hanging up
that channel. The tracker keeps the live ones with a small id the API can address.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from callcenter.domain.events import Event, SpyStarted, SpyStopped


@dataclass
class ActiveSpy:
    id: int
    pbx: str
    call_id: str | None
    spyer_channel: str
    target_channel: str
    mode: str | None
    started_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "pbx": self.pbx, "call_id": self.call_id, "spyer_channel": self.spyer_channel,
                "target_channel": self.target_channel, "mode": self.mode, "started_at": self.started_at.isoformat()}


class SpyTracker:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.by_channel: dict[str, ActiveSpy] = {}

    def on_event(self, event: Event) -> None:
        if isinstance(event, SpyStarted):
            old = self.by_channel.get(event.spyer_channel)
            spy_id = old.id if old is not None else next(self._ids)
            self.by_channel[event.spyer_channel] = ActiveSpy(
                spy_id, event.pbx, event.call_id, event.spyer_channel, event.target_channel,
                event.mode.value if event.mode is not None else None, event.at)
        elif isinstance(event, SpyStopped):
            self.by_channel.pop(event.spyer_channel, None)

    def get(self, spy_id: int) -> ActiveSpy | None:
        return next((s for s in self.by_channel.values() if s.id == spy_id), None)

    def all(self) -> list[ActiveSpy]:
        return sorted(self.by_channel.values(), key=lambda s: s.id)
