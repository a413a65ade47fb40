"""Drop-path (stochastic depth): the max subnet in training only, like the classifier dropout."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from support.train import tiny_spec
from torch import nn

from gen5nas.data import Batch, write_synthetic
from gen5nas.errors import SpecError
from gen5nas.spec import load_space
from gen5nas.spec.space import parse_model
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.supernet import Supernet, extract_subnet
from gen5nas.supernet.ops import drop_path
from gen5nas.train.job import run_supernet_training
from gen5nas.train.sandwich import SandwichStep, StepContext

TINY = load_space("mobilenetv2_tiny")


def _net(rate: float, seed: int = 0) -> Supernet:
    """A supernet whose residual branches matter: the zero-initialised last BN gammas of the
    residual blocks would make them identities, and drop-path invisible."""
    torch.manual_seed(seed)
    net = Supernet(TINY, num_classes=10, dropout=0.0, drop_path=rate)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net


def test_drop_path_zeroes_whole_samples_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    out = drop_path(torch.ones(2000, 3, 2, 2), 0.25)
    per_sample = out.flatten(1)
    assert torch.equal(per_sample.min(1).values, per_sample.max(1).values)  # all or nothing
    values = per_sample[:, 0].unique()
    assert len(values) == 2 and values[0] == 0 and values[1] == pytest.approx(1 / 0.75)
    assert abs(out.mean().item() - 1.0) < 0.1
    x = torch.randn(4, 3)
    state = torch.get_rng_state()
    assert drop_path(x, 0.0) is x
    assert torch.equal(torch.get_rng_state(), state)  # rate 0 draws nothing: runs reproduce


def test_active_on_the_max_subnet_in_training_only() -> None:
    net, plain = _net(0.5).train(), _net(0.0).train()
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    assert not torch.equal(net(x), net(x))  # two draws of the dropped branches differ
    net.dropout_active = False  # what the sandwich sets for the smaller subnets
    assert torch.equal(net(x), net(x))
    assert torch.equal(net(x), plain(x))
    net.dropout_active = True
    plain.load_state_dict(net.state_dict())  # the same BN running stats (train mode moved them)
    net.eval(), plain.eval()
    assert torch.equal(net(x), plain(x))  # eval: nothing dropped, nothing rescaled


def test_the_sandwich_drops_paths_in_the_max_pass_only() -> None:
    net = _net(0.4).train()
    rates: list[float] = []
    # blocks(1)[0] runs in every subnet; its rate is the second step of the linear ramp.
    net.blocks(1)[0].register_forward_hook(lambda m, args, out: rates.append(float(args[1])))
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g), 0
    )
    SandwichStep(TINY, num_random=2, seed=1)(net, batch, StepContext(epoch=0, iteration=0))
    blocks = sum(TINY.max().stages[i].num_blocks for i in range(len(TINY.max().stages)))
    assert rates == [pytest.approx(0.4 / (blocks - 1)), 0.0, 0.0, 0.0]
    assert net.dropout_active  # restored after the step


def test_extracted_subnets_have_no_drop_path() -> None:
    net = _net(0.5).train()
    arch = TINY.sample(random.Random(2))
    subnet = extract_subnet(net, arch)
    assert subnet.training
    x = torch.randn(4, 3, *arch.resolution)
    assert torch.equal(subnet(x), subnet(x))  # train mode, yet deterministic
    net.eval()
    net.set_active(arch)
    assert torch.equal(net(x), extract_subnet(net, arch)(x))  # extraction stays exact


def test_the_spec_field_is_checked_and_reaches_the_supernet(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2)
    assert SupernetTrainingSpec.model_validate(tiny_spec(data)).model.drop_path == 0.0
    with pytest.raises(SpecError, match=r"model\.dropPath.*less than 1"):
        parse_model(SupernetTrainingSpec, tiny_spec(data, model={"dropPath": 1.0}))
    with pytest.raises(ValueError, match=r"drop_path must be in \[0, 1\)"):
        Supernet(TINY, num_classes=2, drop_path=-0.1)

    spec = SupernetTrainingSpec.model_validate(
        tiny_spec(
            data,
            model={"dropPath": 0.3},
            schedule={"epochs": 1, "maxItersPerEpoch": 1},
            deterministic=False,
        )
    )
    result = run_supernet_training(spec, tmp_path / "work", device="cpu")
    assert isinstance(result.model, Supernet) and result.model.drop_path == 0.3
