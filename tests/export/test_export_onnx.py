"""Export of max, min and random subnets to ONNX: the file round-trips through onnxruntime
(same top-1 on every real val image as PyTorch), the card describes it, the subnet's BN is
recalibrated, writes are atomic and a failed re-export leaves the previous ONNX + card pair."""

from __future__ import annotations

import random
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from support.export import (
    VAL_SAMPLES,
    export_spec,
    ort_top1,
    tiny_space,
)
from torch import nn

from gen5nas.data import build_loaders
from gen5nas.export.export import ExportError, export_subnet, verified_onnx
from gen5nas.export.onnx_card import card_path_for, file_sha256, read_card, verify_card
from gen5nas.export.prepare import load_and_resolve, prepare_subnet
from gen5nas.spec.common import DatasetSpec
from gen5nas.supernet import extract_subnet


def _val_loader(digits: Path, resolution: tuple[int, int]):  # type: ignore[no-untyped-def]
    spec = DatasetSpec(
        kind="imagefolder",
        path=str(digits),
        batch_size=64,
        num_workers=0,
        max_val_samples=VAL_SAMPLES,
    )
    return build_loaders(spec, resolution, train=False).val


ARCHS = {
    "max": lambda s: s.max(),
    "min": lambda s: s.min(),
    "random": lambda s: s.sample(random.Random(7)),
}


@pytest.mark.parametrize("which", list(ARCHS))
def test_export_round_trips_through_onnxruntime(
    which: str, digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    arch = ARCHS[which](tiny_space())
    spec = export_spec(checkpoint, digits, arch=arch.to_yaml_dict())
    result = export_subnet(spec, tmp_path, device="cpu")

    assert result.onnx_path == tmp_path / "subnet.onnx"
    model = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, *arch.resolution]

    card = result.card
    assert read_card(result.card_path) == card
    assert card["onnx"]["sha256"] == file_sha256(result.onnx_path)
    assert verify_card(result.card_path)
    assert card["arch"] == arch.to_yaml_dict()
    assert card["source"]["checkpoint"] == str(checkpoint)
    assert card["onnx"]["opset"] == 17
    assert card["params"] > 0 and card["macs"] > 0
    assert card["cost"]["profile"] == spec.profile == "rcar-gen5-npu"
    assert card["cost"]["latency_ms"] > 0 and card["cost"]["energy_mj"] > 0
    # A classifier's cost scope is the whole network: the exported model, costed either way.
    whole = card["cost_whole_model"]
    assert card["cost"]["scope"] == "network" and "subnet.onnx" in whole["scope"]
    # (Not exactly: this fresh checkpoint has equal weights, which the exporter aliases.)
    assert (whole["latency_ms"], whole["energy_mj"]) == pytest.approx(
        (card["cost"]["latency_ms"], card["cost"]["energy_mj"]), rel=1e-2
    )
    assert card["accuracy"]["task"] == "classification"
    assert set(card["accuracy"]["extra_metrics"]) == {"accuracy_top5"}
    # bnCalibrationBatches (2) train batches of batchSize (32) recomputed the BN statistics.
    assert card["accuracy"]["inherited_bn_calibration_images"] == 2 * 32
    parity = card["onnx"]["parity"]
    assert parity["max_abs_diff"] <= parity["tolerance"]

    # onnxruntime alone, on every real val image, reproduces PyTorch's inherited accuracy
    # (a one-image slack for a near-tie whose argmax flips under a 1e-6 difference).
    top1, n = ort_top1(result.onnx_path, _val_loader(digits, arch.resolution), static_batch=1)
    assert n == card["accuracy"]["val_images"]
    assert abs(top1 - card["accuracy"]["inherited"]) <= 100.0 / n + 1e-9


def test_exported_subnet_has_recalibrated_bn(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """The subnet cut out of the supernet gets BN statistics of its own: every BN layer's
    running stats differ from the ones extract_subnet copies out of the supernet."""
    arch = tiny_space().max()
    spec = export_spec(checkpoint, digits, arch=arch.to_yaml_dict())
    resolved = load_and_resolve(spec)
    raw = {
        name: buf.clone()
        for name, buf in extract_subnet(resolved.supernet, arch).named_buffers()
        if name.endswith(("running_mean", "running_var"))
    }
    assert raw
    prepared = prepare_subnet(spec, tmp_path, resolved)
    assert prepared.bn_images == 2 * 32
    calibrated = dict(prepared.model.named_buffers())
    same = [name for name, before in raw.items() if torch.equal(calibrated[name], before)]
    assert same == []


def test_opset_18_export(digits: Path, checkpoint: Path, tmp_path: Path) -> None:
    arch = tiny_space().min()
    spec = export_spec(checkpoint, digits, arch=arch.to_yaml_dict(), opset=18)
    result = export_subnet(spec, tmp_path, device="cpu")
    model = onnx.load(str(result.onnx_path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert result.card["onnx"]["opset"] == 18 and verify_card(result.card_path)
    parity = result.card["onnx"]["parity"]
    assert parity["max_abs_diff"] <= parity["tolerance"]


def test_dynamic_batch_runs_any_batch_size(digits: Path, checkpoint: Path, tmp_path: Path) -> None:
    arch = tiny_space().min()
    out = tmp_path / "dyn" / "m.onnx"
    spec = export_spec(
        checkpoint, digits, arch=arch.to_yaml_dict(), dynamicBatch=True, output=str(out)
    )
    result = export_subnet(spec, tmp_path, device="cpu")
    assert result.onnx_path == out and result.card_path == card_path_for(out)
    assert result.card["onnx"]["input"]["shape"][0] == "batch"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = torch.randn(n, 3, *arch.resolution).numpy()
        assert session.run(None, {"input": x})[0].shape == (n, 10)


def test_static_batch_of_four(digits: Path, checkpoint: Path, tmp_path: Path) -> None:
    arch = tiny_space().min()
    h, w = arch.resolution
    spec = export_spec(checkpoint, digits, arch=arch.to_yaml_dict(), inputShape=[4, 3, h, w])
    result = export_subnet(spec, tmp_path, device="cpu")
    assert result.card["onnx"]["input"]["shape"] == [4, 3, h, w]
    assert result.card["onnx"]["parity"]["images"] % 4 == 0


class _TraceDiffers(nn.Module):
    """Python-side state read at trace time: the ONNX graph freezes a constant that eager
    execution does not (a real mismatch the parity check exists to catch)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x).mean((2, 3)) + float(self.calls)


def test_parity_failure_writes_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    images = torch.randn(4, 3, 8, 8)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        verified_onnx(_TraceDiffers(), (1, 3, 8, 8), out, images)
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp left


def test_card_detects_a_changed_onnx_file(digits: Path, checkpoint: Path, tmp_path: Path) -> None:
    spec = export_spec(checkpoint, digits, arch=tiny_space().min().to_yaml_dict())
    result = export_subnet(spec, tmp_path, device="cpu")
    data = bytearray(result.onnx_path.read_bytes())
    data[-1] ^= 0xFF
    result.onnx_path.write_bytes(bytes(data))
    assert not verify_card(result.card_path)


@pytest.mark.parametrize("failing", ["macs", "cost"])
def test_failed_re_export_keeps_the_previous_onnx_and_card(
    failing: str, digits: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card's inputs (MACs, cost) are computed before any write: a failure there, on a
    re-export of another subnet to the same output, leaves the previous pair consistent."""
    import gen5nas.export.export as export_module
    import gen5nas.supernet

    out = tmp_path / "model.onnx"
    space = tiny_space()
    first = export_subnet(
        export_spec(checkpoint, digits, arch=space.min().to_yaml_dict(), output=str(out)),
        tmp_path,
        device="cpu",
    )
    onnx_before, card_before = out.read_bytes(), first.card_path.read_text()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{failing} failed")

    if failing == "macs":
        monkeypatch.setattr(gen5nas.supernet, "count_macs", broken)
    else:
        monkeypatch.setattr(export_module, "estimate_cost", broken)
    again = export_spec(checkpoint, digits, arch=space.max().to_yaml_dict(), output=str(out))
    with pytest.raises(RuntimeError, match=f"{failing} failed"):
        export_subnet(again, tmp_path, device="cpu")

    assert out.read_bytes() == onnx_before
    assert first.card_path.read_text() == card_before
    assert read_card(first.card_path)["onnx"]["sha256"] == file_sha256(out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "model.card.json",
        "model.onnx",
    ]  # no temp file either
