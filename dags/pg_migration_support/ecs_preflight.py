"""The ECS runner's pre-flight: its settings and task definition against the Airflow connections.

No secret is read: DescribeTaskDefinition says which servers/users the definition's plain environment
names and which secrets it maps; those are compared with the run's connections (and, for the rehearsal,
with the go-live definition: never its target secret). How the containers reach each side over TLS
(:func:`pg_migration_support.ecs.in_container`) is reported too. Called by the ``preflight`` task with
runner ``ecs`` (:func:`preflight`); :func:`check_task_definition` is pure (unit-testable without AWS).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError
from pg_migration_support import rehearsal as rehearsal_checks
from pg_migration_support.ecs import (
    CONTAINER_CA_BUNDLE,
    SECRET_NAMES,
    EcsSettings,
    _ecs_client,
    in_container,
    resolve,
)
from pg_migration_support.params import SETTINGS

log = logging.getLogger("airflow.task")


# -- pre-flight ---------------------------------------------------------------------------------------------


def _finding(check: str, verdict: str, detail: str) -> dict[str, str]:
    return {"check": check, "verdict": verdict, "detail": detail}


def preflight(
    source: Endpoint, target: Endpoint, params: dict[str, Any], rehearsal: bool = False
) -> list[dict[str, str]]:
    """Settings and task definition, compared with the Airflow connections (no secret is read).
    ``rehearsal``: the rehearsal task definition, which must not map the go-live one's target secret."""
    try:
        settings = resolve(params, rehearsal=rehearsal)
    except ConfigError as exc:
        return [_finding("ecs settings", "blocking", str(exc))]
    out = [
        _finding("ecs settings", "ok", settings.describe()),
        *[_tls_finding(side, e) for side, e in (("source", source), ("target", target))],
    ]
    if not settings.security_groups:
        out.append(
            _finding(
                "ecs security groups",
                "warning",
                "none set: tasks get the VPC's default security group (the stack creates one for the worker)",
            )
        )
    try:
        definition = _ecs_client(settings).describe_task_definition(taskDefinition=settings.task_definition)
    except Exception as exc:  # noqa: BLE001 - name what failed; the run stops before writing anything
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return out + [
            _finding("ecs task definition", "blocking", f"cannot describe {settings.task_definition!r}: {first}")
        ]
    source_major = None
    try:
        with source.connect("pg_migration preflight", autocommit=True) as conn:
            source_major = conn.info.server_version // 10000
    except MigrationError:
        pass  # the library's pre-flight already reported the connection
    td = definition["taskDefinition"]
    if rehearsal:
        out.append(_check_rehearsal_definition(td, settings, params))
    return out + check_task_definition(td, settings, source, target, source_major)


def _tls_finding(side: str, endpoint: Endpoint) -> dict[str, str]:
    """How the containers reach this side over TLS (:func:`in_container`)."""
    seen = in_container(endpoint)
    if endpoint.sslcert or endpoint.sslkey:
        return _finding(
            f"ecs {side} tls",
            "warning",
            "client certificate files are not in the worker image: the containers omit them",
        )
    if seen.sslrootcert == CONTAINER_CA_BUNDLE:
        return _finding(
            f"ecs {side} tls", "ok", f"sslmode {seen.sslmode or 'prefer'}, the image's CA bundle {CONTAINER_CA_BUNDLE}"
        )
    verified = f"sslrootcert {seen.sslrootcert}" if seen.sslrootcert else "the server's certificate not verified"
    return _finding(f"ecs {side} tls", "ok", f"sslmode {seen.sslmode or 'prefer'}, {verified}")


def _check_rehearsal_definition(td: dict[str, Any], settings: EcsSettings, params: dict[str, Any]) -> dict[str, str]:
    """The rehearsal definition against the go-live one (``ecs_task_definition``): never its target secret."""
    golive_name = params.get("ecs_task_definition") or os.environ.get(
        next(s.env for s in SETTINGS if s.name == "task_definition"), ""
    )
    golive = None
    if golive_name.strip():
        try:
            described = _ecs_client(settings).describe_task_definition(taskDefinition=golive_name.strip())
            golive = described["taskDefinition"]
        except Exception as exc:  # noqa: BLE001 - named in the finding; a missing go-live definition is no leak
            log.warning("cannot describe the go-live task definition %r: %s", golive_name, exc)
    return rehearsal_checks.check_task_definitions(td, golive, settings.container)


def check_task_definition(
    td: dict[str, Any],
    settings: EcsSettings,
    source: Endpoint,
    target: Endpoint,
    source_major: int | None = None,
) -> list[dict[str, str]]:
    """Findings for a DescribeTaskDefinition result (pure: unit-testable without AWS)."""
    name = f"{td.get('family')}:{td.get('revision')}"
    out: list[dict[str, str]] = []
    compat = td.get("requiresCompatibilities") or td.get("compatibilities") or []
    if "FARGATE" not in compat or td.get("networkMode") != "awsvpc":
        out.append(
            _finding(
                "ecs task definition",
                "blocking",
                f"{name} is not a Fargate definition (compatibilities {compat}, network mode {td.get('networkMode')})",
            )
        )
    containers = {c.get("name"): c for c in td.get("containerDefinitions") or []}
    container = containers.get(settings.container)
    if container is None:
        return out + [
            _finding(
                "ecs container",
                "blocking",
                f"{name} has no container {settings.container!r} (it has {', '.join(sorted(containers))})",
            )
        ]
    out.append(
        _finding("ecs container", "ok", f"{name} container {settings.container!r} image {container.get('image')}")
    )

    environment = {e["name"]: e.get("value", "") for e in container.get("environment") or []}
    secrets = {s["name"]: s.get("valueFrom", "") for s in container.get("secrets") or []}
    plain = sorted(k for k in environment if k.endswith("_PASSWORD"))
    if plain:
        out.append(
            _finding(
                "ecs secrets",
                "blocking",
                f"{name} has {', '.join(plain)} in its plain environment: put passwords in `secrets` (Secrets Manager)",
            )
        )
    for side, endpoint in (("source", source), ("target", target)):
        secret = SECRET_NAMES[side]
        if secret in secrets:
            if not td.get("executionRoleArn"):
                out.append(
                    _finding("ecs secrets", "blocking", f"{name} maps {secret} but has no execution role to read it")
                )
            else:
                out.append(_finding("ecs secrets", "ok", f"{secret} from {_secret_name(secrets[secret])}"))
        elif endpoint.password:
            out.append(
                _finding(
                    "ecs secrets",
                    "blocking",
                    f"the {side} connection has a password but {name} maps no {secret} in its `secrets`: "
                    "the worker could not log in",
                )
            )
        else:
            out.append(_finding("ecs secrets", "ok", f"no {secret}: the {side} connection has no password either"))
        out.append(_compare_endpoint(name, side, endpoint, environment))

    out += _check_logs(name, container, settings)
    image = str(container.get("image") or "")
    m = re.search(r":pg(\d+)(?:[.-]|$)", image)
    if m and source_major and int(m.group(1)) < source_major:
        out.append(
            _finding(
                "ecs image",
                "blocking",
                f"image {image} has pg_dump {m.group(1)}, older than the source ({source_major}): "
                f"build it with --build-arg PG_MAJOR={source_major}",
            )
        )
    return out


def _secret_name(value_from: str) -> str:
    """The secret's name without its random suffix, JSON key or version (no value is ever read)."""
    parts = value_from.split(":")
    if len(parts) >= 7 and parts[2] == "secretsmanager":
        return parts[6] + (f" (key {parts[7]})" if len(parts) > 7 and parts[7] else "")
    return value_from.rsplit("/", 1)[-1]


def _compare_endpoint(name: str, side: str, endpoint: Endpoint, environment: dict[str, str]) -> dict[str, str]:
    """The definition's plain settings say which server/user its secret is for: they must match."""
    prefix = f"PGMIG_{side.upper()}_"
    want = {"HOST": endpoint.host, "PORT": str(endpoint.port), "USER": endpoint.user}
    have = {k: environment[prefix + k] for k in want if prefix + k in environment}
    if not have:
        return _finding(
            f"ecs {side} endpoint",
            "warning",
            f"{name} does not name the {side} server ({prefix}HOST/PORT/USER): cannot check that its "
            f"password secret is for {endpoint.describe()} (the stack sets them)",
        )
    diff = [f"{prefix}{k}={have[k]!r} but the connection has {want[k]!r}" for k in have if have[k] != want[k]]
    if diff:
        return _finding(
            f"ecs {side} endpoint",
            "blocking",
            f"{name} is set up for another {side}: " + "; ".join(diff) + " (its password secret would not match)",
        )
    return _finding(f"ecs {side} endpoint", "ok", f"{name} names the same {side}: {', '.join(sorted(have))} match")


def _check_logs(name: str, container: dict[str, Any], settings: EcsSettings) -> list[dict[str, str]]:
    conf = container.get("logConfiguration") or {}
    options = conf.get("options") or {}
    problems = []
    if conf.get("logDriver") != "awslogs":
        problems.append(f"log driver {conf.get('logDriver')!r} (awslogs needed)")
    if options.get("awslogs-group") != settings.log_group:
        problems.append(f"awslogs-group {options.get('awslogs-group')!r} but ecs_log_group is {settings.log_group!r}")
    if options.get("awslogs-stream-prefix") != settings.log_stream_prefix:
        problems.append(
            f"awslogs-stream-prefix {options.get('awslogs-stream-prefix')!r} but ecs_log_stream_prefix is "
            f"{settings.log_stream_prefix!r}"
        )
    if settings.region and options.get("awslogs-region") not in (None, settings.region):
        problems.append(f"awslogs-region {options.get('awslogs-region')!r} but ecs_region is {settings.region!r}")
    if problems:
        return [
            _finding(
                "ecs logs",
                "blocking",
                f"{name}: " + "; ".join(problems) + " -- the tasks could not read their containers' logs",
            )
        ]
    return [_finding("ecs logs", "ok", f"{settings.log_group} / {settings.log_stream_prefix}/{settings.container}/…")]


def adjust_local_findings(findings: list[dict[str, str]]) -> list[dict[str, str]]:
    """With runner ecs, the pg_dump of the Airflow worker is not used: the image's is."""
    out = []
    for f in findings:
        if f["check"] == "pg_dump":
            f = {**f, "verdict": "ok", "detail": f"runner ecs: the worker image's pg_dump runs (here: {f['detail']})"}
        out.append(f)
    return out
