"""The gen5nas kopf operator (no torch): SupernetTraining, NASSearch and SubnetExport.

Where each concern lives:

- ``kinds/`` -- one package per kind, each with ``reconcile.py`` (that kind's reconcile, in named
  steps), ``children.py`` (its child builders: spec -> manifests, pure) and ``status.py`` (its
  status: children + study -> status fields, pure; the schema of those fields), and in its
  ``__init__`` the kind's row in the table of kinds (``kinds.KINDS``: names, spec model,
  immutable fields, printer columns, status schema, reconcile), which the CRD generator, the
  reconcile dispatch and the API paths all read.

  - ``kinds/training/`` -- SupernetTraining: backend choice, PyTorchJob or Indexed Job +
    rendezvous Service, the workload identity, rank 0's progress.
  - ``kinds/search/`` -- NASSearch: estimator Deployment + Service, search Job, the study's trial
    counts and Pareto front (records from ``gen5nas.search.results``), estimator lifecycle.
  - ``kinds/export/`` -- SubnetExport: export Job, the report from its termination message.
- ``common/`` -- what every kind shares: ``ownership`` (owner, child names, labels, work dir),
  ``pods`` (pod template, volumes, spec ConfigMap, Job), ``conditions`` (phases, conditions),
  ``child_state`` (a Job's state), ``ensure`` (create missing children, wait on a dependency,
  ``Outcome``), ``status_schema`` (shared status schema, printer-column helpers), ``kind`` (the
  table's row type).
- ``reconcile`` (dispatch by kind), ``resync`` (apply an outcome: events + status; the periodic
  loop), ``handlers`` (kopf wiring), ``crdgen`` (CRDs from the spec models), ``kube`` (a small
  REST layer over the official client), ``policy`` (what a resource's author may choose for its
  pods), ``study`` (read/delete a study), ``settings``,
  ``termination`` (the export pod's last step), ``__main__``.
"""
