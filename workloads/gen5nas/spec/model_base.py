"""The base of every spec model (camelCase aliases, unknown fields refused, finite floats,
bounded strings) and the one place a pydantic ValidationError becomes a :class:`SpecError`
naming each field path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from gen5nas.errors import SpecError
from gen5nas.spec.bounds import (
    DNS1123_SUBDOMAIN,
    MAX_STRING,
)


class SpecModel(BaseModel):
    """Base of every spec model: camelCase aliases for Kubernetes, snake_case (the seed's names)
    accepted as well, and unknown fields refused so that a typo never passes silently."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,  # .inf / .nan in a float field is refused, never trained with
        str_max_length=MAX_STRING,
    )


def errors_at(title: str, errors: list[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """A ValidationError with each ``(loc, message, value)`` at its own ``loc`` (relative to the
    model being validated).

    Raised from a model validator, pydantic prefixes the outer path, so :func:`parse_model`'s
    ``SpecError.field`` names the exact entry (``arch_setting.expand_ratio[3]``) rather than the
    whole model, as a plain ValueError would.
    """
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{reason}", {"reason": reason}),
                loc=where,
                input=value,
            )
            for where, reason, value in errors
        ],
    )


def format_validation_error(exc: ValidationError, source: str | None = None) -> str:
    """One line per problem, each naming the dotted field path and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = _dotted(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the spec reference in the README)"
        elif (
            err["type"] == "string_pattern_mismatch"
            and (err.get("ctx") or {}).get("pattern") == DNS1123_SUBDOMAIN
        ):
            msg = (
                f"{str(err['input'])[:80]!r} is not a DNS-1123 name: lowercase letters, digits, "
                f"'-' and '.', starting and ending with a letter or digit (e.g. my-search)"
            )
        lines.append(f"{loc}: {msg}" if loc else msg)
    head = f"{source}: invalid spec" if source else "invalid spec"
    return head + ":\n  " + "\n  ".join(lines)


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_model(model: type[ModelT], data: Any, source: str | None = None) -> ModelT:
    """Validate ``data`` into ``model``; a failure becomes a :class:`SpecError` listing fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = SpecError(format_validation_error(exc, source))
        error.field = _dotted(exc.errors()[0]["loc"]) if exc.errors() else None
        raise error from None
