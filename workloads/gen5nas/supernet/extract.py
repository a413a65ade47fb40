"""Cut one subnet out of the supernet as a plain static network: a walk of the tree the
supernet runs, with the widths of the arch's plan (:func:`gen5nas.spec.plan.network_plan`)."""

from __future__ import annotations

from torch import nn

from gen5nas.spec import Arch
from gen5nas.spec.plan import IMAGE_CHANNELS
from gen5nas.supernet.model import Supernet
from gen5nas.supernet.static import StaticSubnet


def extract_subnet(supernet: Supernet, arch: Arch) -> StaticSubnet:
    """A :class:`StaticSubnet` for ``arch`` with the supernet's weights and BN running stats
    copied (no storage shared: later changes to either side do not reach the other).

    Raises :class:`gen5nas.errors.ArchError` naming the dimension when ``arch`` is outside the
    space. The supernet's active arch is set to ``arch`` for the walk and restored afterwards.
    The subnet is in the supernet's train/eval mode and expects input at ``arch.resolution``.
    """
    previous = supernet.active_arch
    supernet.set_active(arch)  # validates first: nothing changes on an ArchError
    try:
        plan = supernet.active_plan
        stem = supernet.stem.to_static(IMAGE_CHANNELS)
        stages = [
            nn.Sequential(*(block.to_static() for block in supernet.blocks(i)[:depth]))
            for i, depth in enumerate(plan.depths)
        ]
        last = supernet.last.to_static(plan.features_channels)
        classifier = supernet.classifier.to_static(arch.last_num_out_channels)
    finally:
        supernet.set_active(previous)
    subnet = StaticSubnet(arch, stem, stages, last, supernet.dropout.p, classifier)
    return subnet.train(supernet.training)
