"""The table of kinds: one package per custom resource kind, each holding that kind's
reconcile (``reconcile.py``), its child builders (``children.py``) and its status
(``status.py``), and in its ``__init__`` the kind's row: names, spec model, immutable fields,
printer columns, status schema and reconcile function.

``training`` (SupernetTraining), ``search`` (NASSearch), ``export`` (SubnetExport). The CRD
generator (``crdgen``), the reconcile dispatch (``reconcile.RECONCILERS``) and the API paths
(``kube.PLURALS``) all read ``KINDS``. Nothing here imports the kubernetes client.
"""

from __future__ import annotations

from gen5nas_operator.common.kind import Kind
from gen5nas_operator.kinds.export import KIND as EXPORT
from gen5nas_operator.kinds.search import KIND as SEARCH
from gen5nas_operator.kinds.training import KIND as TRAINING

KINDS: list[Kind] = [TRAINING, SEARCH, EXPORT]
KINDS_BY_NAME = {k.kind: k for k in KINDS}
