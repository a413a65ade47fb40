"""Named search spaces shipped with gen5nas (``gen5nas/spaces/*.yaml``), defined once."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from gen5nas.errors import SpecError
from gen5nas.spec.space import SearchSpace, parse_model, read_yaml
from gen5nas.spec.yaml_input import load_yaml_text

DEFAULT_SPACE = "mobilenetv2_sample1"


def named_spaces() -> list[str]:
    folder = resources.files("gen5nas") / "spaces"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


@cache
def _named(name: str) -> SearchSpace:
    path = resources.files("gen5nas") / "spaces" / f"{name}.yaml"
    source = f"space {name}"
    return parse_model(SearchSpace, load_yaml_text(path.read_text(), source), source=source)


def load_space(name_or_path: str | Path = DEFAULT_SPACE) -> SearchSpace:
    """A shipped space by name (e.g. ``mobilenetv2_sample1``) or a YAML file of one."""
    text = str(name_or_path)
    if text in named_spaces():
        return _named(text)
    path = Path(text)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        return parse_model(SearchSpace, read_yaml(path, "search space file"), source=str(path))
    raise SpecError(
        f"unknown search space {text!r}: use one of {named_spaces()} or a path to a YAML file"
    )
