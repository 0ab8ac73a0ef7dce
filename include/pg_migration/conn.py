"""Connection endpoints: how the library, the worker and its children reach PostgreSQL.

An :class:`Endpoint` is everything needed to open a session except that the password is kept
apart from everything that gets printed, logged or passed on a command line:

* ``Endpoint.public()`` is the non-secret part (safe for XCom, ECS overrides and reports);
* ``Endpoint.to_env(prefix)`` / ``Endpoint.from_env(prefix)`` carry an endpoint to the worker
  process through its environment (``PGMIG_SOURCE_HOST`` ...; the password in
  ``PGMIG_SOURCE_PASSWORD``), never through argv;
* ``Endpoint.libpq_env()`` is the environment for PostgreSQL client tools (``pg_dump``): the
  password travels in ``PGPASSWORD`` of that child only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from include.pg_migration.errors import ConfigError

#: Non-secret libpq options an endpoint may carry (Airflow connection extras with the same names).
SSL_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey")

ENV_FIELDS = ("host", "port", "dbname", "user", *SSL_OPTIONS)


@dataclass(frozen=True)
class Endpoint:
    """One PostgreSQL database, as the migration reaches it."""

    host: str
    port: int = 5432
    dbname: str = "postgres"
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    #: Name used in messages ("source", "target", or the Airflow connection id).
    label: str = "database"

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_uri(cls, uri: str, label: str = "database") -> Endpoint:
        """Parse ``postgresql://user:pw@host:port/db?sslmode=...`` (Airflow connection URI form)."""
        parts = urlsplit(uri)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"{label}: not a PostgreSQL URI (scheme {parts.scheme!r})")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 5432,
            dbname=unquote(parts.path.lstrip("/")) or "postgres",
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password is not None else None,
            label=label,
            **{k: query[k] for k in SSL_OPTIONS if k in query},
        )

    @classmethod
    def from_env(cls, prefix: str, label: str, environ: dict[str, str] | None = None) -> Endpoint:
        """Read ``{prefix}_HOST`` ... and ``{prefix}_PASSWORD`` (the worker's configuration)."""
        env = os.environ if environ is None else environ
        missing = [f"{prefix}_{k.upper()}" for k in ("host", "dbname", "user") if not env.get(f"{prefix}_{k.upper()}")]
        if missing:
            raise ConfigError(f"{label}: missing environment variable(s) {', '.join(missing)}")
        values: dict[str, Any] = {k: env.get(f"{prefix}_{k.upper()}") or None for k in ENV_FIELDS}
        values["port"] = int(values["port"] or 5432)
        return cls(password=env.get(f"{prefix}_PASSWORD"), label=label, **values)

    # -- what may be shown ---------------------------------------------------------------------
    def public(self) -> dict[str, Any]:
        """Every field but the password (safe for logs, XCom, ECS overrides, reports)."""
        data = asdict(self)
        data.pop("password")
        return {k: v for k, v in data.items() if v is not None}

    def describe(self) -> str:
        return f"{self.label} ({self.user}@{self.host}:{self.port}/{self.dbname})"

    def to_env(self, prefix: str, with_password: bool = True) -> dict[str, str]:
        env = {f"{prefix}_{k.upper()}": str(getattr(self, k)) for k in ENV_FIELDS if getattr(self, k) is not None}
        if with_password and self.password is not None:
            env[f"{prefix}_PASSWORD"] = self.password
        return env

    def with_dbname(self, dbname: str) -> Endpoint:
        return replace(self, dbname=dbname)

    def check_tls_files(self) -> None:
        """The TLS files this endpoint names exist and are readable here (a clear error, naming the path,
        instead of libpq's or a silently unverified session). ``sslrootcert=system`` is libpq's own store."""
        for key in ("sslrootcert", "sslcert", "sslkey"):
            path = getattr(self, key)
            if not path or (key == "sslrootcert" and path == "system"):
                continue
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except FileNotFoundError:
                raise ConfigError(f"{self.describe()}: {key} {path} does not exist") from None
            except OSError as exc:
                raise ConfigError(f"{self.describe()}: {key} {path} is not readable ({exc.strerror or exc})") from None

    # -- using it --------------------------------------------------------------------------------
    def conninfo(self, application_name: str = "pg_migration") -> dict[str, Any]:
        info: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "application_name": application_name[:63],
            # Always UTF-8 on the wire: a LATIN1/WIN1252 source is converted by its server, and
            # names from an SQL_ASCII source still decode as text.
            "client_encoding": "UTF8",
            "connect_timeout": 15,
            # Detect a dead peer within about a minute instead of the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        if self.password is not None:
            info["password"] = self.password
        for key in SSL_OPTIONS:
            if getattr(self, key):
                info[key] = getattr(self, key)
        return info

    def connect(
        self, application_name: str = "pg_migration", autocommit: bool = False, **kwargs: Any
    ) -> psycopg.Connection:
        """Open a session; failures name the endpoint (never the password)."""
        try:
            return psycopg.connect(**{**self.conninfo(application_name), **kwargs}, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to {self.describe()}: {_first_line(exc)}") from None

    def libpq_env(self, application_name: str = "pg_migration") -> dict[str, str]:
        """Environment for a PostgreSQL client tool child process (password in PGPASSWORD only)."""
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.dbname,
            "PGUSER": self.user,
            "PGAPPNAME": application_name[:63],
            "PGCONNECT_TIMEOUT": "15",
            "PGCLIENTENCODING": "UTF8",
        }
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        for key in SSL_OPTIONS:
            if getattr(self, key):
                env[f"PG{key.upper()}"] = getattr(self, key)
        return env


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
