"""Callback requests: pure core (``core``), the dispatch loop (``service``), taking a request on the
phone (``dialog``), reports (``reports``) and the ORM classes of migration 0004 (``models``).

``models`` is imported here so that importing this package registers its tables on the shared
``Base.metadata`` (the migration test compares the metadata with the migrated schema)."""

from callcenter.callbacks import models as models  # registers the 0004 tables
