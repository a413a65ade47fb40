"""The committed gRPC stubs are exactly what scripts/gen-proto.sh generates from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "workloads" / "gen5nas" / "estimator" / "_proto"


def test_stubs_do_not_drift(tmp_path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-proto.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    generated = sorted(p.name for p in tmp_path.iterdir())
    assert generated == sorted(p.name for p in STUBS.iterdir() if p.suffix in {".py", ".pyi"})
    for name in generated:
        assert (tmp_path / name).read_text() == (STUBS / name).read_text(), (
            f"{name} differs from proto/: run scripts/gen-proto.sh and commit the result"
        )


def test_stubs_import_as_a_subpackage() -> None:
    from gen5nas.estimator._proto import estimator_pb2, estimator_pb2_grpc

    assert estimator_pb2.DESCRIPTOR.package == "gen5nas.ppa.v1"
    assert estimator_pb2.DESCRIPTOR.name == "gen5nas/ppa/v1/estimator.proto"
    assert hasattr(estimator_pb2_grpc, "EstimatorStub")
