"""Help texts and argument errors answer without importing torch or dipy (issue 22): the parsers read their
defaults from torch-free modules, and ``equidmri`` imports only the module of the subcommand asked for (for
``equidmri bench NAME``, only its parser module, :mod:`equidmri.bench.options`).

Each case runs in a fresh interpreter and lists the heavy modules loaded when ``main`` returns; the timings
are measured by ``equidmri bench cli``, not here.
"""

import json
import subprocess
import sys

import pytest

from equidmri.bench.catalog import BENCHES
from equidmri.cli.main import build_parser, main

HEAVY = ("torch", "dipy", "healpy", "nibabel", "scipy", "matplotlib", "numpy")
CASES = {  # command line after `equidmri` -> exit code
    ("--help",): 0,
    ("deconv", "--help"): 0,
    ("deconv",): 2,  # the required inputs are missing
    ("deconv", "--dwi", "d", "--bvals", "b", "--bvecs", "v", "--out", "o", "--method", "SHD-TTV"): 2,
    ("deconv", "--dwi", "d", "--bvals", "b", "--bvecs", "v", "--out", "o", "--epochs", "0"): 2,
    ("predict", "--help"): 0,
    ("train", "--help"): 0,
    ("train", "--cohort", "c", "--out", "o", "--epochs", "0"): 2,
    ("demo", "--help"): 0,
    ("demo", "--npeaks", "x"): 2,
    ("methods", "--help"): 0,
    ("methods",): 0,  # the listing itself
    ("phantom", "--help"): 0,
    ("evaluate", "--help"): 0,
    ("evaluate", "--gt", "g"): 2,
    ("fa", "train", "--help"): 0,
    ("fa", "predict", "--help"): 0,
    ("fa", "train", "--model", "resnet"): 2,
    ("synth", "--help"): 0,
    ("synth", "--dwi", "d", "--bvals", "b", "--bvecs", "v", "--out", "o.npz", "--mode", "x"): 2,
    ("synth", "--dwi", "d", "--bvals", "b", "--bvecs", "v", "--out", "o.npz", "--n-voxels", "0"): 2,
    ("harmonize", "train", "--help"): 0,
    ("harmonize", "apply", "--help"): 0,
    ("harmonize", "train", "--reference-site", "b", "--target-site", "a", "--out", "o", "--method", "combat"): 2,
    ("denoise", "train", "--help"): 0,
    ("denoise", "apply", "--help"): 0,
    ("denoise", "train", "--dwi", "d", "--bvals", "b", "--bvecs", "v", "--out", "o", "--activation", "swish"): 2,
    ("lesions", "data", "--help"): 0,
    ("lesions", "train", "--help"): 0,
    ("lesions", "predict", "--help"): 0,
    ("lesions", "train", "--data", "d", "--out", "o", "--model", "unet"): 2,
    ("bench", "--help"): 0,
    **{("bench", name, "--help"): 0 for name in BENCHES},
    ("bench", "layers", "--variants", "z"): 2,  # one bad argument per benchmark
    ("bench", "unet", "--nsides", "x"): 2,
    ("bench", "throughput", "--epochs", "x"): 2,
    ("bench", "equivariance", "--samples", "x"): 2,
    ("bench", "mnist", "--nside", "x"): 2,
    ("bench", "fa", "--n-train", "x"): 2,
    ("bench", "table", "--out", "o"): 2,  # --data is missing
    ("bench", "realdata", "--volume", "x"): 2,  # not NAME=DIR
    ("bench", "cli", "--repeats", "x"): 2,
    ("bench", "threads", "--epochs", "x"): 2,
    ("bench", "cohort", "--subjects", "x"): 2,
    ("bench", "harmonize", "--size", "x"): 2,
    ("bench", "pretrained", "--model"): 2,  # FILE is missing
    ("bench", "pq-layer", "--cases", "first:tp"): 2,  # no such variant
    ("bench", "synthesis", "--epochs", "x"): 2,
    ("bench", "spherical-layers", "--width", "x"): 2,
    ("bench", "lesions", "--epochs", "x"): 2,
}
PROBE = (
    "import contextlib, io, json, sys\n"
    "from equidmri.cli.main import main\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
    "    code = main(sys.argv[1:])\n"
    "print(json.dumps([code, sorted(name for name in {heavy} if name in sys.modules)]))\n"
)


@pytest.mark.parametrize(("argv", "code"), CASES.items(), ids=[" ".join(argv) for argv in CASES])
def test_help_and_argument_errors_import_neither_torch_nor_dipy(argv, code):
    probe = PROBE.format(heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [code, []]


def test_bench_help_lists_every_benchmark_of_the_catalog(capsys):
    assert main(["bench", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the summaries
    for name, bench in BENCHES.items():
        assert name in text and bench.summary in text


def test_each_benchmark_module_registers_the_catalog_name_and_summary():
    bench = build_parser(["bench"])._subparsers._group_actions[0].choices["bench"]
    commands = bench._subparsers._group_actions[0]
    helps = {action.dest: action.help for action in commands._choices_actions}
    assert set(commands.choices) == set(BENCHES) == set(helps)
    assert helps == {name: entry.summary for name, entry in BENCHES.items()}
    assert all(callable(parser.get_default("run")) for parser in commands.choices.values())


def test_every_benchmark_has_a_bad_argument_case():
    assert {argv[1] for argv, code in CASES.items() if argv[0] == "bench" and code == 2} == set(BENCHES)


@pytest.mark.parametrize("name", BENCHES)
def test_each_benchmark_runs_the_run_of_its_module_with_its_name_in_errors(name, tmp_path, capsys):
    extra = ["--data", str(tmp_path)] if name == "table" else []
    args = build_parser(["bench"], [name]).parse_args(["bench", name, "--out", str(tmp_path), *extra])
    assert args.run.args == (BENCHES[name].module,)
    # only the benchmark's run checks --threads, before any work
    assert main(["bench", name, "--threads", "0", "--out", str(tmp_path), *extra]) == 2
    assert capsys.readouterr().err == f"equidmri bench {name}: error: --threads must be >= 1, got 0\n"
