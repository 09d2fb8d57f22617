"""Trunkline's configuration: a TOML file, then ``TRUNKLINE_*`` environment variables on top.

Every setting has a default (RFC values for SIP timers), so ``trunkline run`` needs no file.
Environment variables name a setting as ``TRUNKLINE_<SECTION>_<KEY>`` (``TRUNKLINE_SIP_PORTS=
5060,6060``, ``TRUNKLINE_API_PORT=8080``); three have short names: ``TRUNKLINE_DATABASE_URL``,
``TRUNKLINE_ADMIN_TOKEN`` and ``TRUNKLINE_VAR_DIR``.  Unknown keys are errors, not silently
ignored, so a typo cannot leave a setting at its default.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SipSettings(_Section):
    host: str = "0.0.0.0"  # all interfaces, as a switch serving phones must
    ports: list[int] = Field(default_factory=lambda: [5060, 6060])
    udp: bool = True
    tcp: bool = True
    advertised_host: str | None = None  # address written into Via/Contact (default: per peer)
    realm: str = "trunkline"  # digest realm of devices whose customer has no domain
    no_answer_timeout: float = Field(60.0, gt=0)
    t1: float = Field(0.5, gt=0)  # RFC 3261 table 4
    t2: float = Field(4.0, gt=0)
    t4: float = Field(5.0, gt=0)
    max_message_size: int = Field(65535, ge=1024)
    max_tcp_connections: int = Field(10000, ge=1)
    max_tcp_per_ip: int = Field(200, ge=1)
    tcp_idle_timeout: float = Field(3900.0, gt=0)

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        if not value or any(not 0 <= p <= 65535 for p in value) or len(set(value)) != len(value):
            raise ValueError("ports must be distinct numbers 0-65535")
        return value


class RegistrarSettings(_Section):
    min_expires: int = Field(60, ge=1)
    max_expires: int = Field(3600, ge=1)
    default_expires: int = Field(3600, ge=1)
    max_contacts: int = Field(10, ge=1)


class AuthSettings(_Section):
    algorithms: list[str] = Field(default_factory=lambda: ["SHA-256", "MD5"])
    nonce_ttl: float = Field(300.0, gt=0)
    nonce_secret: str | None = None  # shared by the nodes of a cluster; default: var/nonce-secret
    check_uri: bool = False  # require the digest uri to equal the Request-URI (RFC 7616 3.4.6)
    guard_window: float = Field(60.0, gt=0)
    guard_slow_after: int = Field(3, ge=1)
    guard_block_after: int = Field(10, ge=1)
    guard_block_for: float = Field(300.0, gt=0)
    guard_max_delay: float = Field(2.0, ge=0)


class ApiSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"  # the admin API is local by default; put a proxy in front to publish it
    port: int = Field(8080, ge=0, le=65535)


class DatabaseSettings(_Section):
    url: str | None = None  # default: SQLite under var_dir


class BillingSettings(_Section):
    """The CDR spool (written by the switch) and the billing sidecar that consumes it."""

    enabled: bool = True  # `trunkline run` starts and supervises `trunkline billing`
    spool_dir: Path | None = None  # default: <var_dir>/spool
    fsync_interval: float = Field(0.02, ge=0)  # seconds between batched fdatasyncs; 0 = in every write
    segment_bytes: int = Field(64 << 20, ge=4096)  # a spool segment rotates at this size
    batch_interval: float = Field(0.2, gt=0, le=10)  # how often the sidecar looks for new CDRs
    max_batch: int = Field(5000, ge=1)  # CDRs per database transaction at most
    archive: bool = False  # keep consumed segments in <spool_dir>/archive instead of deleting them


class Settings(_Section):
    var_dir: Path = Path("var")
    log_level: str = "INFO"
    admin_token: str | None = None
    sip: SipSettings = Field(default_factory=lambda: SipSettings())
    registrar: RegistrarSettings = Field(default_factory=lambda: RegistrarSettings())
    auth: AuthSettings = Field(default_factory=lambda: AuthSettings())
    api: ApiSettings = Field(default_factory=lambda: ApiSettings())
    database: DatabaseSettings = Field(default_factory=lambda: DatabaseSettings())
    billing: BillingSettings = Field(default_factory=lambda: BillingSettings())

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.var_dir / 'trunkline.db').resolve()}"

    @property
    def spool_dir(self) -> Path:
        return self.billing.spool_dir if self.billing.spool_dir is not None else self.var_dir / "spool"


class ConfigError(ValueError):
    pass


_SHORT = {"TRUNKLINE_DATABASE_URL": ("database", "url"), "TRUNKLINE_ADMIN_TOKEN": (None, "admin_token"),
          "TRUNKLINE_VAR_DIR": (None, "var_dir"), "TRUNKLINE_LOG_LEVEL": (None, "log_level")}
_SECTIONS = ("sip", "registrar", "auth", "api", "database", "billing")


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("TRUNKLINE_"):
            continue
        if name in _SHORT:
            section, key = _SHORT[name]
        else:
            rest = name[len("TRUNKLINE_"):].lower()
            section, _, key = rest.partition("_")
            if section not in _SECTIONS or not key:
                continue  # other TRUNKLINE_ variables (e.g. test switches) are not settings
        parsed: Any = value
        if (section, key) in (("sip", "ports"), ("auth", "algorithms")):
            parsed = [v.strip() for v in value.split(",") if v.strip()]
        if section is None:
            out[key] = parsed
        else:
            out.setdefault(section, {})[key] = parsed
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (if any), apply the environment, validate; ConfigError names the field."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc
