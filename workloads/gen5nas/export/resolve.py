"""Which subnet to export: an arch YAML, an inline arch, or a trial of a search study.

Whatever the source, the arch is checked against the checkpoint's search space, so a subnet
from another space fails with an :class:`ArchError` naming the dimension before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen5nas.errors import ArchError, SpecError
from gen5nas.spec import Arch, SearchSpace, load_arch
from gen5nas.spec.space import parse_model


@dataclass(frozen=True)
class SubnetChoice:
    """The chosen arch and where it came from (recorded in the ONNX card)."""

    arch: Arch
    source: str  # "arch_file" | "inline" | "trial"
    arch_file: str | None = None
    trial: int | None = None
    study: str | None = None
    storage: str | None = None  # without credentials
    search_values: dict[str, Any] = field(default_factory=dict)  # the trial's objectives/attrs

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        for name in ("arch_file", "trial", "study", "storage"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.search_values:
            out["search"] = self.search_values
        return out


def resolve_subnet(
    space: SearchSpace,
    *,
    arch: Arch | None = None,
    arch_file: str | Path | None = None,
    trial: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> SubnetChoice:
    """Exactly one of ``arch``, ``arch_file``, ``trial`` (the latter with ``storage``)."""
    given = [
        n for n, v in (("arch", arch), ("archFile", arch_file), ("trial", trial)) if v is not None
    ]
    if len(given) != 1:
        raise SpecError(
            f"name exactly one subnet (trial, archFile or arch); got {given or 'none'}",
            field="spec",
        )
    if arch is not None:
        choice = SubnetChoice(arch=arch, source="inline")
        where = "spec.arch"
    elif arch_file is not None:
        choice = SubnetChoice(
            arch=load_arch(arch_file), source="arch_file", arch_file=str(arch_file)
        )
        where = str(arch_file)
    else:
        assert trial is not None
        choice = arch_of_trial(space, trial, storage=storage, study_name=study_name)
        where = f"trial {trial}"
    try:
        space.check(choice.arch)
    except ArchError as exc:
        detail = str(exc).removeprefix(f"{exc.dimension}: ")
        raise ArchError(f"{detail}, in {where}", exc.dimension) from None
    return choice


def open_existing_study(storage: str, study_name: str | None) -> Any:
    """Load an existing study; never creates one (a typo must not make an empty study)."""
    import optuna

    from gen5nas.search.study import STORAGE_FIELD, open_storage, parse_storage_url, redact

    url = parse_storage_url(storage)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).is_file():
        raise SpecError(f"no study database at {url.database}", field=STORAGE_FIELD)
    rdb = open_storage(storage)
    names = sorted(s.study_name for s in rdb.get_all_studies())
    if study_name is None:
        if len(names) != 1:
            raise SpecError(
                f"{redact(storage)} holds {len(names)} studies {names}; name one with studyName",
                field="studyName",
            )
        study_name = names[0]
    elif study_name not in names:
        raise SpecError(
            f"no study {study_name!r} in {redact(storage)}; it holds {names}", field="studyName"
        )
    return optuna.load_study(study_name=study_name, storage=rdb)


def arch_of_trial(
    space: SearchSpace, number: int, *, storage: str | None, study_name: str | None
) -> SubnetChoice:
    """The arch of trial ``number``, which must exist and be COMPLETE."""
    from optuna.trial import TrialState

    from gen5nas.search.study import redact

    if not storage:
        raise SpecError(
            "a trial number needs the study's storage: set storage (an Optuna RDB URL, e.g. "
            "sqlite:///work/search/study.db) or, in a cluster, nasSearch",
            field="storage",
        )
    study = open_existing_study(storage, study_name)
    trials = study.get_trials(deepcopy=False)
    found = next((t for t in trials if t.number == number), None)
    if found is None:
        last = max((t.number for t in trials), default=None)
        span = f"trials 0..{last}" if last is not None else "no trials"
        raise SpecError(
            f"trial {number} does not exist in study {study.study_name!r} (it has {span})",
            field="trial",
        )
    if found.state != TrialState.COMPLETE:
        complete = [t.number for t in trials if t.state == TrialState.COMPLETE]
        shown = ", ".join(map(str, complete[:10])) + (" ..." if len(complete) > 10 else "")
        raise SpecError(
            f"trial {number} of study {study.study_name!r} is {found.state.name}; only a "
            f"COMPLETE trial can be exported (complete ones: {shown or 'none'})",
            field="trial",
        )
    return SubnetChoice(
        arch=_trial_arch(space, found),
        source="trial",
        trial=number,
        study=study.study_name,
        storage=redact(storage),
        search_values=_search_values(study, found),
    )


def _trial_arch(space: SearchSpace, trial: Any) -> Arch:
    # A user attr "arch" holding the arch as a dict wins (gen5nas search stores only its
    # summary there); else the params, decoded as the search encodes them.
    from gen5nas.search.encoding import params_to_arch

    stored = trial.user_attrs.get("arch")
    if isinstance(stored, dict):
        return parse_model(Arch, stored, source=f"trial {trial.number} user_attrs.arch")
    params = dict(trial.params)
    for name, choices in space.iter_choices():
        if name not in params:
            raise SpecError(
                f"trial {trial.number} has no param {name!r}: it was not written by gen5nas "
                "search for this search space",
                field="trial",
            )
        value = params[name]
        if name == "resolution" and isinstance(value, str):  # the search's "HxW" encoding
            value = tuple(int(v) for v in value.split("x"))
        if value not in choices:
            raise ArchError(
                f"trial {trial.number} has {value}, not in {choices}: the study searched "
                "another space than the checkpoint's",
                name,
            )
    return params_to_arch(space, params)


def _search_values(study: Any, trial: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    names = study.metric_names or [f"objective_{i}" for i in range(len(trial.values or []))]
    for name, value in zip(names, trial.values or [], strict=False):
        values[name] = value
    for key, value in trial.user_attrs.items():
        if isinstance(value, int | float | str | bool):
            values[key] = value
    return values
