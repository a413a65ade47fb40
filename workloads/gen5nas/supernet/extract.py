"""Cut one subnet out of the supernet as a plain static network: a walk of the tree the
supernet runs, with the widths of the arch's plan (:func:`gen5nas.spec.plan.network_plan`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from gen5nas.spec import Arch
from gen5nas.spec.plan import IMAGE_CHANNELS
from gen5nas.supernet.model import ElasticBackbone, Supernet
from gen5nas.supernet.static import StaticBackbone, StaticSubnet


@contextmanager
def active(supernet: ElasticBackbone, arch: Arch) -> Iterator[None]:
    """``arch`` active for the walk, the previous arch restored afterwards (an
    :class:`gen5nas.errors.ArchError` for an arch outside the space changes nothing)."""
    previous = supernet.active_arch
    supernet.set_active(arch)  # validates first: nothing changes on an ArchError
    try:
        yield
    finally:
        supernet.set_active(previous)


def _stem_and_stages(supernet: ElasticBackbone) -> tuple[nn.Sequential, list[nn.Sequential]]:
    stem = supernet.stem.to_static(IMAGE_CHANNELS)
    stages = [
        nn.Sequential(*(block.to_static() for block in supernet.blocks(i)[:depth]))
        for i, depth in enumerate(supernet.active_plan.depths)
    ]
    return stem, stages


def extract_backbone(supernet: ElasticBackbone, arch: Arch) -> StaticBackbone:
    """The stem and stages of ``arch`` as a :class:`StaticBackbone`, weights and BN running
    stats copied as :func:`extract_subnet` does (same errors, modes and input resolution)."""
    with active(supernet, arch):
        stem, stages = _stem_and_stages(supernet)
    return StaticBackbone(arch, stem, stages).train(supernet.training)


def extract_subnet(supernet: Supernet, arch: Arch) -> StaticSubnet:
    """A :class:`StaticSubnet` for ``arch`` with the supernet's weights and BN running stats
    copied (no storage shared: later changes to either side do not reach the other).

    Raises :class:`gen5nas.errors.ArchError` naming the dimension when ``arch`` is outside the
    space. The supernet's active arch is set to ``arch`` for the walk and restored afterwards.
    The subnet is in the supernet's train/eval mode and expects input at ``arch.resolution``.
    """
    with active(supernet, arch):
        stem, stages = _stem_and_stages(supernet)
        last = supernet.last.to_static(supernet.active_plan.features_channels)
        classifier = supernet.classifier.to_static(arch.last_num_out_channels)
    subnet = StaticSubnet(arch, stem, stages, last, supernet.dropout.p, classifier)
    return subnet.train(supernet.training)
