"""Tests of equidmri.cli.main: the entry point, help texts and exit codes."""

import os
import subprocess
import sys

import pytest

from equidmri.cli import main as cli_main
from equidmri.cli.commands import EXIT_BROKEN_PIPE
from equidmri.cli.main import build_parser, main


@pytest.mark.parametrize(
    ("command", "units"),
    [
        ("deconv", ["s/mm²", "voxels", "degrees"]),
        ("predict", ["s/mm²", "voxels", "degrees"]),
        ("demo", ["voxels", "degrees"]),
    ],
)
def test_subcommand_help_exits_zero_and_states_units(command, units, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: equidmri {command}")
    for unit in units:
        assert unit in text


def test_top_level_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("deconv", "predict", "demo"):
        assert command in text


def test_missing_subcommand_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "equidmri: error:" in capsys.readouterr().err


def _nested(parser):
    return parser._subparsers._group_actions[0].choices if parser._subparsers else {}


def test_every_subcommand_module_registers_run_and_prog():
    subparsers = _nested(build_parser())
    assert set(subparsers) == {
        "deconv", "methods", "predict", "train", "demo", "phantom", "evaluate", "fa", "synth", "harmonize", "lesions",
        "denoise", "bench",
    }  # fmt: skip
    assert set(_nested(subparsers["bench"])) == {
        "layers",
        "unet",
        "throughput",
        "equivariance",
        "mnist",
        "fa",
        "table",
        "realdata",
        "cli",
        "threads",
        "cohort",
        "pretrained",
        "harmonize",
        "lesions",
        "pq-layer",
        "synthesis",
        "spherical-layers",
    }
    assert set(_nested(subparsers["fa"])) == {"train", "predict"}
    assert set(_nested(subparsers["harmonize"])) == {"train", "apply"}
    assert set(_nested(subparsers["denoise"])) == {"train", "apply"}
    assert set(_nested(subparsers["lesions"])) == {"data", "train", "predict"}
    commands = {name: parser for name, parser in subparsers.items() if not _nested(parser)}
    for group in ("bench", "fa", "harmonize", "lesions", "denoise"):
        commands.update({f"{group} {name}": parser for name, parser in _nested(subparsers[group]).items()})
    for name, parser in commands.items():
        assert parser.prog == f"equidmri {name}"
        assert callable(parser.get_default("run"))


def test_the_entry_point_module_loads_neither_torch_nor_healpy():
    code = (
        "import sys, equidmri.cli.main as m; m.build_parser([]); "
        "print(sorted(n for n in ('torch', 'healpy', 'dipy', 'matplotlib') if n in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_ctrl_c_during_start_up_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(*chosen):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    assert main(["deconv", "--help"]) == 130
    assert capsys.readouterr().err == "equidmri: interrupted\n"


def test_an_unknown_command_is_a_usage_error_naming_the_commands(capsys):
    assert main(["deconvolve"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'deconvolve'" in err and "'deconv'" in err


@pytest.mark.parametrize(
    ("argv", "codes"),
    [(["methods"], {EXIT_BROKEN_PIPE}), (["deconv", "--help"], {0, EXIT_BROKEN_PIPE})],  # help: argparse may
    # swallow the error itself
    ids=["methods", "deconv --help"],
)
def test_a_closed_stdout_pipe_ends_quietly(argv, codes):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write, as `| head -1` after its line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "equidmri.cli.main", *argv], stdout=write_end, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode in codes
