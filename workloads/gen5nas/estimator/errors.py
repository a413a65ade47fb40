"""Errors of the estimator, each mapped to the gRPC status a client sees.

``code`` is the name of a ``grpc.StatusCode``; kept as a string so this module needs no grpc.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator

from gen5nas.errors import Gen5NasError


class EstimatorError(Gen5NasError):
    """A request the estimator cannot answer; the message says what to change."""

    code = "INVALID_ARGUMENT"


class InvalidRequest(EstimatorError):
    code = "INVALID_ARGUMENT"


class NotFound(EstimatorError):
    code = "NOT_FOUND"


class TooLarge(EstimatorError):
    code = "RESOURCE_EXHAUSTED"


class NotAvailable(EstimatorError):
    """A capability this server lacks (e.g. building an arch's ONNX needs gen5nas.supernet)."""

    code = "FAILED_PRECONDITION"


class DeadlineExceeded(EstimatorError):
    code = "DEADLINE_EXCEEDED"


class BackendUnavailable(EstimatorError):
    """A backend that cannot serve now (its worker failed to start); another server may."""

    code = "UNAVAILABLE"


class Cancelled(EstimatorError):
    code = "CANCELLED"


# The request being served: (deadline as a time.monotonic() instant or None, client-gone test).
_REQUEST: contextvars.ContextVar[tuple[float | None, Callable[[], bool]] | None] = (
    contextvars.ContextVar("gen5nas_estimator_request", default=None)
)


@contextlib.contextmanager
def request_scope(
    deadline: float | None, client_gone: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Within it, :func:`check_deadline` stops work whose request is past its deadline or whose
    client went away (a context variable, so the analysis needs no request argument)."""
    token = _REQUEST.set((deadline, client_gone))
    try:
        yield
    finally:
        _REQUEST.reset(token)


def check_deadline(stage: str) -> None:
    """Raise DeadlineExceeded / Cancelled between stages of a request that nobody waits for."""
    scope = _REQUEST.get()
    if scope is None:
        return
    deadline, client_gone = scope
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded(f"the request's deadline passed during {stage}; stopped there")
    if client_gone():
        raise Cancelled(f"the client went away during {stage}; stopped there")


def request_deadline() -> float | None:
    scope = _REQUEST.get()
    return None if scope is None else scope[0]


class EstimatorUnavailable(Gen5NasError):
    """Every estimator endpoint failed (unreachable or too slow) after the client's retries."""


class EstimatorRequestError(Gen5NasError):
    """The server refused a request (bad model, unknown profile...); retrying will not help."""

    def __init__(self, message: str, code: str) -> None:
        self.code = code
        super().__init__(message)
