"""``gen5nas export`` and ``gen5nas retrain``.

Export, two equivalent forms::

    gen5nas export -f subnetexport.yaml [--work-dir DIR] [--output M.onnx]
    gen5nas export CONFIG CHECKPOINT ARCH_YAML 1,3,224,224 --output M.onnx [--work-dir DIR]

The second is the seed's ``convert_subnet2onnx.py`` form. CONFIG is any gen5nas manifest, or
the copy of it that ``gen5nas train``/``search``/``export`` leave in their work dir:

- a SubnetExport: its spec is used (opset, dynamicBatch, dataset, profile, retrain...), with its
  checkpoint, subnet and input shape replaced by the positional arguments;
- a NASSearch: its dataset and its estimator (servers, profile, hwConfig) are used;
- a SupernetTraining: its dataset is used.

The dataset serves BN recalibration, the inherited accuracy and the onnxruntime parity check.
The input shape must be N,3,H,W with (H, W) the arch's resolution (an exported subnet does not
resize its input). Outputs: the ONNX file, ``<name>.card.json`` beside it, and in the work dir a
copy of CONFIG and a timestamped log folder.

Retrain::

    gen5nas retrain -f subnetexport.yaml [--work-dir DIR] [--epochs N]
    torchrun --nproc-per-node 4 -m gen5nas retrain -f subnetexport.yaml

fine-tunes the subnet's inherited weights (or trains it from scratch with
``retrain.fromScratch: true``) in ``<work dir>/retrain``; rerunning the same command resumes.
``gen5nas export`` with ``retrain.enabled: true`` retrains (or reuses a finished retrain) first.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXPORT_USAGE = (
    "gen5nas export -f SUBNETEXPORT.yaml [options]\n"
    "       gen5nas export CONFIG CHECKPOINT ARCH_YAML N,C,H,W --output MODEL.onnx [options]"
)
CONFIG_KINDS = ("SubnetExport", "NASSearch", "SupernetTraining")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", type=Path, default=None, help="output directory")
    parser.add_argument(
        "--checkpoint", default=None, help="override spec.checkpoint (a .pth or training work dir)"
    )
    parser.add_argument("--storage", default=None, help="override spec.storage (Optuna URL)")
    parser.add_argument("--study-name", default=None, help="override spec.studyName")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available"
    )


def register(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export",
        help="cut a subnet out of the supernet and write a verified ONNX model + card",
        usage=EXPORT_USAGE,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("-f", "--file", type=Path, default=None, help="SubnetExport manifest")
    export.add_argument(
        "positional",
        nargs="*",
        metavar="CONFIG CHECKPOINT ARCH_YAML N,C,H,W",
        help="the seed-like form (instead of -f)",
    )
    export.add_argument("--output", type=Path, default=None, help="the ONNX file to write")
    _common(export)
    export.set_defaults(func=handle_export)

    retrain = subparsers.add_parser(
        "retrain",
        help="fine-tune (or train from scratch) an extracted subnet; resumes from the work dir",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    retrain.add_argument("-f", "--file", type=Path, required=True, help="SubnetExport manifest")
    retrain.add_argument("--epochs", type=int, default=None, help="override spec.retrain.epochs")
    _common(retrain)
    retrain.set_defaults(func=handle_retrain)


# ---- reading the config -----------------------------------------------------------------------
def spec_from_config(
    config: Path, checkpoint: str, arch_file: str, input_shape: str
) -> tuple[str, Any]:
    """The SubnetExport spec of the seed-like form (see the module docstring)."""

    from gen5nas.errors import SpecError
    from gen5nas.export.input_shape import parse_input_shape
    from gen5nas.spec.common import read_manifest
    from gen5nas.spec.export import SubnetExportSpec
    from gen5nas.spec.search import NASSearchSpec
    from gen5nas.spec.space import parse_model, read_yaml_documents
    from gen5nas.spec.training import SupernetTrainingSpec

    models: dict[str, type[SubnetExportSpec | NASSearchSpec | SupernetTrainingSpec]] = {
        "SubnetExport": SubnetExportSpec,
        "NASSearch": NASSearchSpec,
        "SupernetTraining": SupernetTrainingSpec,
    }
    try:
        docs = [d for d in read_yaml_documents(config) if isinstance(d, dict)]
    except SpecError as exc:
        exc.field = "CONFIG"
        raise
    kinds = [d.get("kind") for d in docs if d.get("kind") in CONFIG_KINDS]
    if kinds:
        kind = str(kinds[0])
    elif len(docs) == 1 and "kind" not in docs[0]:
        # A bare spec (no envelope), as the seed's config files: its keys tell the kind.
        bare = docs[0]
        if "searchSpace" in bare or "search_space" in bare:
            kind = "SupernetTraining"
        elif any(k in bare for k in ("estimator", "costKey", "cost_key", "maxTrials")):
            kind = "NASSearch"
        else:
            kind = "SubnetExport"
    else:
        found = [d.get("kind") for d in docs]
        raise SpecError(
            f"{config}: expected a manifest of kind {list(CONFIG_KINDS)}, found {found}",
            field="CONFIG",
        )
    manifest, raw = read_manifest(config, kind)
    overrides: dict[str, Any] = {
        "checkpoint": checkpoint,
        "arch_file": arch_file,
        "input_shape": parse_input_shape(input_shape),
    }
    if kind == "SubnetExport":
        # ARCH_YAML is the subnet: the config's own (if any) goes, under either spelling, and
        # the result is validated once (a config naming no subnet is valid input here).
        fields = SubnetExportSpec.model_fields
        replaced = {"trial", "arch", *overrides}
        keys = {k for name in replaced for k in (name, fields[name].alias)}
        data = {k: v for k, v in raw.items() if k not in keys}
        data.update(overrides)
    else:
        other: NASSearchSpec | SupernetTrainingSpec = parse_model(  # type: ignore[assignment]
            models[kind], raw, source=f"{config}: spec"
        )
        data = {"dataset": other.dataset.model_dump(by_alias=False), **overrides}
        if isinstance(other, NASSearchSpec):
            est = other.estimator
            data["profile"] = est.profile
            data["hw_config"] = dict(est.hw_config)
            data["estimator_servers"] = [s.model_dump() for s in est.servers]
    data = {k: v for k, v in data.items() if v is not None}
    return manifest.name, parse_model(SubnetExportSpec, data, source=f"{config} + arguments")


# ---- handlers ---------------------------------------------------------------------------------
def handle_export(args: argparse.Namespace) -> int:
    from gen5nas.errors import SpecError
    from gen5nas.spec.common import load_spec
    from gen5nas.spec.export import KIND, SubnetExportSpec
    from gen5nas.spec.output_paths import check_writable_dir, check_writable_file

    if args.file is not None and args.positional:
        raise SpecError("give either -f FILE or CONFIG CHECKPOINT ARCH_YAML N,C,H,W, not both")
    if args.file is not None:
        config = args.file
        manifest, spec = load_spec(args.file, KIND, SubnetExportSpec)
        name = manifest.name
        work_dir = args.work_dir or Path("work_dirs") / name
    elif len(args.positional) == 4:
        config, ckpt, arch_file, shape = args.positional
        config = Path(config)
        name, spec = spec_from_config(config, ckpt, arch_file, shape)
        out = args.output or spec.output
        work_dir = args.work_dir or (Path(out).parent if out else Path("work_dirs") / name)
    else:
        raise SpecError(
            f"expected -f FILE or the four arguments CONFIG CHECKPOINT ARCH_YAML N,C,H,W; got "
            f"{len(args.positional)} argument(s) {args.positional}; usage:\n  {EXPORT_USAGE}"
        )

    from gen5nas.export.export import export_subnet
    from gen5nas.run_outputs import RunOutputs
    from gen5nas.tasks.base import format_score
    from gen5nas.train.distributed import shutdown

    check_writable_dir(work_dir, "--work-dir")
    output = args.output or spec.output
    if output:
        check_writable_file(output, "--output" if args.output else "output")
    outputs = RunOutputs(work_dir, "export", config_file=config)
    try:
        result = export_subnet(
            spec,
            work_dir,
            checkpoint=args.checkpoint,
            storage=args.storage,
            study_name=args.study_name,
            output=args.output,
            device=args.device,
            config_file=config,
        )
    finally:
        outputs.close()
        shutdown()
    if result.card:
        card = result.card
        acc = card["accuracy"]
        cost = card["cost"]
        retrained = (
            f", retrained {format_score(acc['retrained'], acc['unit'])}"
            if acc["retrained"] is not None
            else ""
        )
        cost_text = (
            f"{cost['latency_ms']:.3f} ms, {cost['energy_mj']:.3f} mJ on {cost['profile']}"
            if "error" not in cost
            else f"no estimate ({cost['error']})"
        )
        print(f"wrote {result.onnx_path} (sha256 {card['onnx']['sha256'][:16]}...)")
        inherited = format_score(acc["inherited"], acc["unit"])
        print(f"  arch {card['arch_summary']}; {acc['metric']} inherited {inherited}{retrained}")
        print(f"  {card['params']:,} params, {card['macs']:,} MACs; {cost_text}")
        print(f"  parity max |ort - torch| {card['onnx']['parity']['max_abs_diff']:.2g}")
        print(f"card: {result.card_path}")
    return 0


def handle_retrain(args: argparse.Namespace) -> int:
    from gen5nas.spec.bounds import MAX_EPOCHS, check_flag
    from gen5nas.spec.common import load_spec
    from gen5nas.spec.export import KIND, SubnetExportSpec
    from gen5nas.spec.output_paths import check_writable_dir

    manifest, spec = load_spec(args.file, KIND, SubnetExportSpec)
    if args.epochs is not None:
        check_flag(args.epochs, "--epochs", MAX_EPOCHS)
        spec = spec.model_copy(
            update={"retrain": spec.retrain.model_copy(update={"epochs": args.epochs})}
        )
    work_dir = check_writable_dir(args.work_dir or Path("work_dirs") / manifest.name, "--work-dir")

    from gen5nas.export.retrain import REPORT_FILE, run_retrain
    from gen5nas.train.distributed import shutdown

    try:
        outcome = run_retrain(
            spec,
            work_dir,
            checkpoint=args.checkpoint,
            storage=args.storage,
            study_name=args.study_name,
            device=args.device,
            config_file=args.file,
        )
    finally:
        shutdown()
    if outcome.is_main:
        metric = outcome.task.metric
        inherited = outcome.prepared.inherited[metric.key]
        retrained = outcome.retrained.get(metric.key, float("nan"))
        print(
            f"{metric.title}: inherited {metric.format(inherited)} -> retrained "
            f"{metric.format(retrained)} ({outcome.gain:+.2f}) after "
            f"{outcome.result.epochs_completed} epoch(s)"
        )
        print(f"checkpoint: {outcome.result.last_checkpoint}")
        print(f"report: {outcome.work_dir / REPORT_FILE}")
    return 0
