"""``/metrics``: one Prometheus registry served over HTTP in a daemon thread.

The one way the estimator server, the search workers, training and the operator expose their
metrics (no torch here: the operator image imports it).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import start_http_server
from prometheus_client.registry import Collector

from gen5nas.errors import Gen5NasError, SpecError


class MetricsEndpoint:
    """``registry`` served on ``host:port`` (0 = a free port; ``.port`` is the bound one) until
    ``close()``. ``option`` names the setting the port came from, for the errors."""

    def __init__(
        self, registry: Collector, port: int, host: str = "0.0.0.0", option: str = "--metrics-port"
    ) -> None:
        if not 0 <= port <= 65535:
            raise SpecError(f"must be a TCP port (0-65535), got {port}", field=option)
        try:
            self._httpd: Any
            self._httpd, self._thread = start_http_server(port, host, registry=registry)
        except OSError as exc:
            raise Gen5NasError(
                f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}; pick another "
                f"{option}"
            ) from None
        self.host = host
        self.port = int(self._httpd.server_port)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
