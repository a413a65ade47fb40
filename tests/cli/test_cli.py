"""The `gen5nas` entry point: the step table behind --help, a torch-free parser, `space`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gen5nas import cli
from gen5nas.spec import Arch, load_space

JOB_ORDER = ["run", "train", "search", "dashboard", "export", "retrain", "estimator", "space"]


def listed_steps(help_text: str) -> list[str]:
    """The sub-commands --help lists, in order (argparse indents each name by four spaces)."""
    return re.findall(r"^    (\w+)\s", help_text, flags=re.MULTILINE)


def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_lists_every_step_in_job_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert listed_steps(help_text(capsys)) == JOB_ORDER


def test_no_step_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert listed_steps(capsys.readouterr().out) == JOB_ORDER


@pytest.fixture()
def fake_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package ``fakesteps`` on sys.path (removed from sys.modules afterwards)."""
    (tmp_path / "fakesteps").mkdir()
    (tmp_path / "fakesteps" / "__init__.py").write_text("")
    (tmp_path / "fakesteps" / "hello_cli.py").write_text(
        textwrap.dedent(
            """
            def register(sub):
                sub.add_parser("hello", help="a step that exists")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "fakesteps"
    for name in [m for m in sys.modules if m == "fakesteps" or m.startswith("fakesteps.")]:
        del sys.modules[name]


def test_a_step_module_that_does_not_exist_is_left_out(
    fake_steps: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        cli,
        "STEP_MODULES",
        (
            "fakesteps.hello_cli",
            "fakesteps.not_written_yet",  # the module is missing
            "fakesteps.later.cli",  # its package is missing
            "gen5nas.space_cli",
        ),
    )
    assert listed_steps(help_text(capsys)) == ["hello", "space"]


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("raise ImportError(\"cannot import name 'x' from 'y'\")", ImportError),
        ("import no_such_dependency_of_a_step", ModuleNotFoundError),
        # The missing module's name is a prefix of the step's own name, but not its package:
        # still a broken import inside an existing step, never "the step does not exist".
        ("import fakesteps.broken", ModuleNotFoundError),
    ],
)
def test_an_import_error_inside_an_existing_step_propagates(
    fake_steps: Path, monkeypatch: pytest.MonkeyPatch, source: str, error: type[Exception]
) -> None:
    (fake_steps / "broken_cli.py").write_text(source + "\n")
    monkeypatch.setattr(cli, "STEP_MODULES", ("fakesteps.hello_cli", "fakesteps.broken_cli"))
    with pytest.raises(error) as info:
        cli.build_parser()
    assert type(info.value) is error


def test_building_the_parser_imports_no_torch() -> None:
    # A fresh interpreter: this one has torch loaded by other tests.
    heavy = ["torch", "torchvision", "onnx", "onnxruntime"]
    code = (
        "import sys\n"
        "from gen5nas.cli import build_parser\n"
        "build_parser()\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    workloads = str(Path(cli.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([workloads, os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_space_prints_the_default_space(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["space"]) == 0
    out = capsys.readouterr().out
    assert "space: mobilenetv2_sample1\n" in out
    assert "subnets (CompOFA expand table): 5,308,416\n" in out
    assert "subnets (free expand ratio):    254,803,968\n" in out
    # The max and min follow as fix_subnets YAML documents that load back as the extremes.
    space = load_space()
    docs = list(yaml.safe_load_all(out[out.index("--- # max") :]))
    assert [Arch.model_validate(d) for d in docs] == [space.max(), space.min()]


def test_space_error_names_the_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["space", "no_such_space"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gen5nas space: error: ") and "mobilenetv2_sample1" in err
