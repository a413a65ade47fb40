"""``gen5nas dashboard WORK_DIR [--storage URL] [--host 127.0.0.1] [--port 8080]``.

Serves optuna-dashboard on the study of a search, finished or running: the objectives are named
(the task's metric: ``accuracy/top1``, ``coco/bbox_mAP``; the cost: ``latency_ms`` or
``energy_mj``, ``backbone/latency_ms`` when only the backbone is costed) and each trial carries
its metrics (under their keys: ``accuracy_top1``, ``bbox_mAP``...), ``arch_summary`` and its
``fix_subnets`` file as user attributes. The storage is the work dir's ``study.db``, else
the URL the search's resolved config names (a PostgreSQL URL is recorded without its password:
pass ``--storage`` then). The same as ``optuna-dashboard sqlite:///WORK_DIR/study.db``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from gen5nas.errors import SpecError
from gen5nas.run_outputs import RESOLVED_CONFIG_FILE

STUDY_DB = "study.db"
HIDDEN_PASSWORD = "***"  # how SQLAlchemy's render_as_string(hide_password=True) writes it


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dashboard",
        help="open a search's study in optuna-dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("work_dir", type=Path, metavar="WORK_DIR", help="the search's work dir")
    parser.add_argument(
        "--storage", default=None, help="Optuna RDB URL (default: found from WORK_DIR)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="default: 8080")
    parser.set_defaults(func=handle)


def storage_url(work_dir: Path) -> str:
    """The study storage of the search in ``work_dir`` (see the module doc)."""
    if not work_dir.is_dir():
        raise SpecError(f"{work_dir} is not a directory", field="WORK_DIR")
    db = work_dir / STUDY_DB
    if db.is_file():
        return f"sqlite:///{db.resolve()}"
    # The newest run's resolved config (log folders are named by timestamp).
    for config in sorted(work_dir.glob(f"*/{RESOLVED_CONFIG_FILE}"), reverse=True):
        url = (yaml.safe_load(config.read_text()) or {}).get("storage", {}).get("url")
        if not url:
            continue
        if HIDDEN_PASSWORD in url:
            raise SpecError(
                f"{config} names the storage without its password ({url}); pass --storage URL",
                field="--storage",
            )
        return str(url)
    raise SpecError(
        f"no search study in {work_dir}: neither {STUDY_DB} nor a */{RESOLVED_CONFIG_FILE} "
        "naming storage.url; give the search's --work-dir or pass --storage URL",
        field="WORK_DIR",
    )


def handle(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise SpecError(f"--port must be in 1..65535, got {args.port}", field="--port")
    url = args.storage or storage_url(args.work_dir)

    import optuna_dashboard

    from gen5nas.search.study import open_storage, redact

    storage = open_storage(url)
    names = [s.study_name for s in storage.get_all_studies()]
    print(
        f"optuna-dashboard on {redact(url)} (studies: {', '.join(names) or 'none yet'}): "
        f"http://{args.host}:{args.port}/",
        flush=True,
    )
    optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    return 0
