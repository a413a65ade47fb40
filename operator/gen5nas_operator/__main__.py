"""``gen5nas-operator``: run the kopf operator with the settings from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from gen5nas.errors import Gen5NasError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gen5nas-operator",
        description="Reconcile SupernetTraining, NASSearch and SubnetExport resources. "
        "Settings come from GEN5NAS_* environment variables (see operator/README.md).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                        help="kopf's liveness endpoint (empty: none)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import kopf

        from gen5nas_operator import handlers  # registers the handlers
    except Gen5NasError as exc:  # a bad GEN5NAS_* setting
        print(f"gen5nas-operator: error: {exc}", file=sys.stderr)
        return 2
    namespaces = handlers.SETTINGS.namespaces
    if handlers.SETTINGS.metrics_port:
        from gen5nas_operator.metrics import METRICS

        try:
            endpoint = METRICS.serve(handlers.SETTINGS.metrics_port)
        except Gen5NasError as exc:
            print(f"gen5nas-operator: error: {exc}", file=sys.stderr)
            return 2
        logging.getLogger("gen5nas_operator").info("metrics on %s", endpoint.url)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness or None,
            standalone=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
