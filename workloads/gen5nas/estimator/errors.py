"""Errors of the estimator, each mapped to the gRPC status a client sees.

``code`` is the name of a ``grpc.StatusCode``; kept as a string so this module needs no grpc.
"""

from __future__ import annotations

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


class EstimatorUnavailable(Gen5NasError):
    """Every estimator endpoint failed (unreachable or too slow) after the client's retries."""


class EstimatorRequestError(Gen5NasError):
    """The server refused a request (bad model, unknown profile...); retrying will not help."""

    def __init__(self, message: str, code: str) -> None:
        self.code = code
        super().__init__(message)
