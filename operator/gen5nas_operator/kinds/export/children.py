"""A SubnetExport's children: the spec ConfigMap and the export Job (one pod: cut the subnet,
(re)train if asked, write ONNX, check parity, then leave the ONNX card in its termination
message for the operator)."""

from __future__ import annotations

import shlex
from typing import Any

from gen5nas.spec.common import RuntimeSpec
from gen5nas.spec.export import SubnetExportSpec
from gen5nas_operator.common.ownership import Owner, work_dir
from gen5nas_operator.common.pods import (
    SPEC_FILE,
    STORAGE_ENV,
    Manifest,
    effective_spec,
    job_manifest,
    pod_template,
    secret_env,
    spec_configmap,
)
from gen5nas_operator.settings import Settings


def export_children(
    owner: Owner,
    spec: SubnetExportSpec,
    raw_spec: dict[str, Any],
    settings: Settings,
    overrides: dict[str, Any],
    dsn_secret: tuple[str, str] | None = None,
) -> list[Manifest]:
    """ConfigMap + export Job. ``overrides`` carry what the operator resolved (the checkpoint,
    the named NASSearch's study); ``dsn_secret`` is given when the subnet is a study trial."""
    configmap = spec_configmap(owner, "export", effective_spec(raw_spec, overrides))
    return [configmap, exportjob(owner, spec.runtime, settings, dsn_secret)]


def exportjob(
    owner: Owner,
    runtime: RuntimeSpec,
    settings: Settings,
    dsn_secret: tuple[str, str] | None = None,
) -> Manifest:
    """One pod: cut the subnet out, (re)train if asked, write ONNX, check parity; then the
    ONNX card goes to the termination message, where the operator reads it."""
    wd = work_dir(owner, runtime)
    storage = f' --storage "${STORAGE_ENV}"' if dsn_secret else ""
    script = (
        f"gen5nas export -f {SPEC_FILE} --work-dir {shlex.quote(wd)}{storage}"
        f" && exec python -m gen5nas_operator.termination {shlex.quote(wd)}"
    )
    command = ["sh", "-c", script]
    env = [secret_env(dsn_secret)] if dsn_secret else []
    template = pod_template(owner, "export", runtime, settings, command, env)
    return job_manifest(owner, "export", "export", template, backoffLimit=2)
