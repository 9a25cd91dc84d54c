"""Service settings: one YAML file, every field overridable from the environment.

Precedence (highest first): environment variables ``CALLCENTER_<SECTION>__<FIELD>`` (e.g.
``CALLCENTER_DATABASE__DSN``, ``CALLCENTER_HTTP__PORT``; lists such as ``CALLCENTER_PBX`` take
JSON), then the settings file, then the defaults below. The file is ``--config PATH``, else
``$CALLCENTER_CONFIG``, else ``config/callcenter.yaml`` in the working directory if present; with
none, the defaults run (embedded PostgreSQL, no PBX).

Secrets (PBX passwords, the database DSN's password) belong in the environment: a PBX entry
names the variable that holds its secret with ``secret_env``; a literal ``secret`` in the file
works too but is never logged.

A bad file fails at start-up with one message naming file, line, column and field path.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from callcenter.yamlconf import ConfigError, YamlDocument, load_yaml, problems_from_validation, to_plain

ENV_PREFIX = "CALLCENTER_"
DEFAULT_CONFIG = Path("config/callcenter.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Section):
    dsn: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+asyncpg://user:pass@host/db. Unset: embedded PostgreSQL.",
    )
    embedded_data_dir: Path | None = Field(
        default=None, description="Data directory of the embedded server (default: the user data dir)."
    )
    embedded_database: str = "callcenter"
    pool_size: int = Field(default=10, ge=1, le=200)
    connect_timeout_s: float = Field(default=5.0, gt=0)

    def data_dir(self) -> Path:
        if self.embedded_data_dir is not None:
            return self.embedded_data_dir.expanduser()
        return Path(platformdirs.user_data_dir("callcenter")) / "pgdata"


class PbxSettings(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["asterisk", "freeswitch"]
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: 5038 (AMI), 8021 (ESL).")
    username: str | None = Field(default=None, description="AMI user (Asterisk only).")
    secret: SecretStr | None = None
    secret_env: str | None = Field(default=None, description="Name of the environment variable holding the secret.")
    mode: Literal["control", "observe"] = Field(
        default="control", description="observe: follow calls from events only, never act."
    )
    action_timeout_s: float = Field(default=10.0, gt=0)
    record: Path | None = Field(default=None, description="Append raw PBX traffic to this trace file.")

    @model_validator(mode="after")
    def _defaults(self) -> PbxSettings:
        if self.port is None:
            self.port = 5038 if self.type == "asterisk" else 8021
        if self.type == "asterisk" and not self.username:
            raise ValueError("an Asterisk PBX needs 'username' (the AMI user)")
        return self

    def secret_value(self) -> str:
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value is None:
                raise ConfigError(f"PBX {self.name!r}: environment variable {self.secret_env} (secret_env) is not set")
            return value
        if self.secret is not None:
            return self.secret.get_secret_value()
        raise ConfigError(f"PBX {self.name!r}: no secret (set secret_env or secret)")


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)


class RulesSettings(_Section):
    path: Path | None = Field(default=None, description="Routing rules YAML file.")


class CrmSettings(_Section):
    default_region: str = Field(
        default="US", min_length=2, max_length=2, description="ISO country for numbers without +country code."
    )
    lookup_budget_ms: int = Field(default=50, ge=1)
    cache_size: int = Field(default=10_000, ge=0)
    lookup_max_inflight: int = Field(
        default=32, ge=1, description="CRM queries running at once at most; past that a call is routed by the "
        "fallback rule at once instead of waiting for a database that is already behind.")
    routing_index: bool = Field(
        default=False, description="Hold every CRM phone's routing attributes in memory, kept fresh by "
        "LISTEN/NOTIFY: no call waits for PostgreSQL before it is routed. Costs memory per CRM phone "
        "(docs/performance.md gives the figure for 1M customers).")


class JourneySettings(_Section):
    short_abandon_s: float = Field(default=5.0, ge=0)
    fcr_window_h: float = Field(default=72.0, gt=0)
    spill_dir: Path | None = Field(default=None, description="Local journal for records while the DB is down.")

    def spill_path(self) -> Path:
        if self.spill_dir is not None:
            return self.spill_dir.expanduser()
        return Path(platformdirs.user_data_dir("callcenter")) / "spill"


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


_yaml_data: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("_yaml_data", default={})  # noqa: B039


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _yaml_data.get()
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    database: DatabaseSettings = DatabaseSettings()
    pbx: list[PbxSettings] = Field(default_factory=list)
    http: HttpSettings = HttpSettings()
    rules: RulesSettings = RulesSettings()
    crm: CrmSettings = CrmSettings()
    journey: JourneySettings = JourneySettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _unique_pbx_names(self) -> Settings:
        names = [p.name for p in self.pbx]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"PBX names must be unique, repeated: {', '.join(dupes)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc if not isinstance(p, int))


def config_path(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_PREFIX + "CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate the settings; raise ConfigError with file:line:column: field: reason."""
    resolved = config_path(path)
    doc: YamlDocument | None = None
    data: dict[str, Any] = {}
    if resolved is not None:
        doc = load_yaml(resolved)
        plain = to_plain(doc.data)
        if not isinstance(plain, dict):
            raise ConfigError(f"{resolved}:1:1: the settings file must be a mapping of sections")
        data = plain
    token = _yaml_data.set(data)
    try:
        return Settings()
    except ValidationError as err:
        problems = problems_from_validation(err, doc)
        lines = []
        for prob, e in zip(problems, err.errors(include_url=False), strict=True):
            loc = tuple(e["loc"])
            env = _env_name(loc[:1]) if loc else ""
            if loc and any(k.startswith(env) for k in os.environ) and env != ENV_PREFIX:
                lines.append(f"environment {_env_name(loc)}: {prob.path}: {prob.message}")
            else:
                lines.append(str(prob))
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines), problems) from None
    finally:
        _yaml_data.reset(token)
