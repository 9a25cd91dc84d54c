"""Running the API inside the daemon: ``start_http`` / ``stop_http``."""

from __future__ import annotations

from aiohttp import web

from callcenter.api.app import create_app
from callcenter.api.context import ApiContext


async def start_http(ctx: ApiContext, host: str, port: int) -> web.AppRunner:
    """Serve the API on ``host:port`` (port 0: any free port, see ``bound_port``); returns the
    runner to pass to ``stop_http``."""
    runner = web.AppRunner(create_app(ctx), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


async def stop_http(runner: web.AppRunner) -> None:
    """Close open event streams, stop webhook delivery, close the listening socket."""
    await runner.cleanup()


def bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    raise RuntimeError("the HTTP server is not listening")
