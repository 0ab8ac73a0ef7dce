"""Errors the migration raises on purpose. Each message names the schema, table or connection at fault."""


class MigrationError(Exception):
    """Base class: something the operator must act on."""


class ConfigError(MigrationError):
    """Bad input: unknown connection, unreachable host, wrong password, bad parameter."""


class PlanError(MigrationError):
    """The requested work cannot be planned (unknown schema, unsupported dependency...)."""


class SnapshotLost(MigrationError):
    """The run's exported snapshot is gone: its holder died or was released."""


class UnitFailed(MigrationError):
    """A unit of work failed; the message names the unit and the object."""


class GuardHeld(MigrationError):
    """Another run holds the target."""
