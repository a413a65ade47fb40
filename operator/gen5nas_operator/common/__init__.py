"""What every kind shares: ``ownership`` (the owner, child names, labels, work dirs), ``pods``
(pod template, volumes, the spec ConfigMap, Jobs), ``conditions`` (phases and the
Ready/Complete/Failed conditions), ``child_state`` (a Job's state in operator terms),
``ensure`` (create missing children; waiting on another resource), ``status_schema`` (the
status schema pieces and printer columns the CRD generator emits)."""
