"""Settings: read once from ``config.toml``, then overridden by ``FEED_<SECTION>__<KEY>`` variables.

Every component takes plain arguments picked from these settings in ``app.py``; nothing else reads
the environment or the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import limits
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

#: Environment variable naming the config file when no ``--config`` is given.
CONFIG_ENV = "FEED_CONFIG"


def _rate_spec(value: str) -> str:
    if value.strip():
        limits.parse(value)  # "100/second", "1000 per minute"…; a typo fails at startup
    return value


#: A rate limit in the ``limits`` notation, or ``""`` for none.
RateSpec = Annotated[str, AfterValidator(_rate_spec)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """``[server]``: the HTTP/WebSocket listener."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    allowed_origins: list[str] = []
    max_frame_bytes: int = Field(65536, ge=1024)
    queue_size: int = Field(1000, ge=1)
    http_rate_limit: RateSpec = ""
    ws_rate_limit: RateSpec = ""
    auth_timeout: float = Field(5.0, gt=0)
    ping_interval: float = Field(20.0, ge=0)
    ping_timeout: float = Field(20.0, gt=0)
    close_timeout: float = Field(5.0, gt=0)
    shutdown_timeout: float = Field(10.0, gt=0)
    drain_delay: float = Field(2.0, ge=0)
    per_message_deflate: bool = False
    body_timeout: float = Field(10.0, gt=0)
    max_body_readers: int = Field(256, ge=1)
    demo: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False


class RedisSettings(_Section):
    """``[redis]``: where activities live."""

    url: str = ""
    data_dir: str = "./data"
    key_prefix: str = "af:"
    command_timeout: float = Field(1.5, gt=0)
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    cluster: Literal["auto", "on", "off"] = "auto"
    seeds: list[str] = []
    sentinels: list[str] = []
    sentinel_master: str = ""
    min_replica_acks: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check_topology(self) -> RedisSettings:
        """Refuse combinations that cannot work, at startup and with a clear message."""
        if self.sentinels and not self.sentinel_master:
            raise ValueError("[redis] sentinels needs sentinel_master (the name the Sentinels monitor)")
        if self.sentinels and self.cluster == "on":
            raise ValueError('[redis] sentinels and cluster = "on" exclude each other')
        for sentinel in self.sentinels:
            host, _, port = sentinel.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"[redis] sentinels: {sentinel!r} is not host:port")
        if self.cluster == "on":
            for url in [self.url, *self.seeds]:
                if url and redis_db(url) != 0:
                    raise ValueError(
                        f"[redis] a cluster has only database 0, but {url!r} names database {redis_db(url)}; "
                        "use key_prefix to share a cluster"
                    )
        return self


def redis_db(url: str) -> int:
    """The database number a Redis URL names (path ``/N`` or ``?db=N``; 0 when absent)."""
    parsed = urlsplit(url)
    path = parsed.path.strip("/")
    if path:
        return int(path) if path.isdigit() else -1
    for part in parsed.query.split("&"):
        name, _, value = part.partition("=")
        if name == "db" and value:
            return int(value) if value.isdigit() else -1
    return 0


class AuthSettings(_Section):
    """``[auth]``: who may call, and what they may do."""

    jwt_secret: str = ""
    jwt_algorithms: list[str] = ["HS256"]
    jwt_public_key: str = ""
    jwks_url: str = ""
    audience: str = ""
    issuer: str = ""
    api_keys: list[str] = []
    api_key_feeds: dict[str, dict[str, list[str]]] = {}
    public_feeds: list[str] = []
    require_exp: bool = True


class FeedsSettings(_Section):
    """``[feeds]``: the activity model's limits."""

    default_audience: list[str] = ["members"]
    max_activity_bytes: int = Field(10240, ge=256)
    max_batch: int = Field(100, ge=1)
    max_page: int = Field(100, ge=1)
    max_feed_length: int = Field(10000, ge=1)
    retention_days: float = Field(0, ge=0)
    resume_window: int = Field(1000, ge=1)


class FanoutSettings(_Section):
    """``[fanout]``: the durable follow fan-out (SPEC §12; see ``server/follows.py``)."""

    enabled: bool = True
    events_per_batch: int = Field(100, ge=1, le=1000)
    followers_per_chunk: int = Field(200, ge=1, le=10000)
    jobs_per_read: int = Field(16, ge=1, le=1000)
    lease_seconds: float = Field(30.0, gt=0)
    claim_idle_seconds: float = Field(30.0, gt=0)
    sweep_seconds: float = Field(60.0, gt=0)
    poll_seconds: float = Field(0.05, gt=0)
    max_jobs: int = Field(100_000, ge=100)


class FeedGroupSettings(_Section):
    """``[feed_groups.<slug>]``: how feeds ``<slug>:<id>`` behave (SPEC §12)."""

    type: Literal["flat", "aggregated", "notification"] = "flat"
    aggregation_format: str = '{{ verb }}_{{ time.strftime("%Y-%m-%d") }}'
    max_length: int = Field(0, ge=0)  # 0: [feeds] max_feed_length
    #: Activities a group returns (its newest; GetStream keeps 15); counts cover the whole group.
    max_group_activities: int = Field(15, ge=1, le=100)


def _default_feed_groups() -> dict[str, FeedGroupSettings]:
    return {
        "user": FeedGroupSettings(),
        "timeline": FeedGroupSettings(),
        "flat": FeedGroupSettings(),
        "aggregated": FeedGroupSettings(type="aggregated"),
        "notification": FeedGroupSettings(type="notification"),
        "notifications": FeedGroupSettings(type="notification"),
    }


class GetStreamSettings(_Section):
    """``[getstream]``: the GetStream-compatible API (SPEC §11); an empty ``api_key`` turns it off."""

    api_key: str = ""
    api_secret: str = ""
    app_id: str = ""
    bayeux_timeout: float = Field(25.0, gt=0)
    bayeux_client_ttl: float = Field(60.0, gt=0)
    bayeux_queue: int = Field(1000, ge=1)


class Settings(BaseSettings):
    """The whole configuration; frozen once read."""

    model_config = SettingsConfigDict(
        env_prefix="FEED_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: ServerSettings = ServerSettings()
    redis: RedisSettings = RedisSettings()
    auth: AuthSettings = AuthSettings()
    feeds: FeedsSettings = FeedsSettings()
    fanout: FanoutSettings = FanoutSettings()
    feed_groups: dict[str, FeedGroupSettings] = Field(default_factory=_default_feed_groups)

    getstream: GetStreamSettings = GetStreamSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments win, then ``FEED_*`` variables, then the TOML file."""
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from ``path`` (or ``$FEED_CONFIG``, or ``./config.toml`` if present) and the env.

    ``overrides`` are section dicts (``server={"port": 0}``) applied on top of everything else.
    """
    if path is None:
        path = os.environ.get(CONFIG_ENV) or ("config.toml" if Path("config.toml").is_file() else None)
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=str(path) if path else None)

    return _FromFile(**overrides)
