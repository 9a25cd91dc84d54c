"""What the HTTP API is built from: the process's database, controller, settings and rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callcenter.api.ports import RulesPort

if TYPE_CHECKING:
    from callcenter.app import Controller
    from callcenter.settings import Settings
    from callcenter.storage.db import Database


@dataclass
class ApiOptions:
    """Timings and sizes; the defaults suit production, tests shorten them."""

    sse_heartbeat_s: float = 15.0
    sse_queue_size: int = 1000
    webhook_queue_size: int = 1000  # notifications waiting for delivery; beyond: dropped and counted
    webhook_max_attempts: int = 6
    webhook_backoff_s: float = 1.0  # first retry after this, doubling each time
    webhook_backoff_max_s: float = 60.0
    webhook_timeout_s: float = 5.0
    webhook_concurrency: int = 8
    webhook_refresh_s: float = 30.0  # re-read the webhooks table at least this often
    readyz_timeout_s: float = 2.0


@dataclass
class ApiContext:
    database: Database
    controller: Controller
    settings: Settings
    rules: RulesPort | None = None
    options: ApiOptions = field(default_factory=ApiOptions)
