"""The project's user-facing errors. The CLI prints these without a traceback."""

from __future__ import annotations


class Gen5NasError(Exception):
    """An error a user can act on: the message names what is wrong and what is allowed."""


class SpecError(Gen5NasError, ValueError):
    """A spec, manifest or config file is invalid. ``field`` is its dotted path when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class ArchError(Gen5NasError, ValueError):
    """An architecture (subnet choice) is not in the search space."""

    def __init__(self, message: str, dimension: str | None = None) -> None:
        self.dimension = dimension
        super().__init__(f"{dimension}: {message}" if dimension else message)


class CheckpointError(Gen5NasError):
    """A checkpoint is missing, corrupt, or belongs to another search space."""
