"""Tests of the shared page header of the bench commands."""

from equidmri.bench.report import header_lines


def _record(threads):
    machine = {
        "cpu_model": "CPU",
        "cores": 2,
        "threads": threads,
        "device": "cpu",
        "python": "3",
        "torch": "2",
        "equidmri": "0",
        "git_commit": "abc",
    }
    return {
        "command": "equidmri bench x",
        "date": "today",
        "machine": machine,
        "load_average": {"start": [0.5, 0.25, 0.125], "end": [1.0, 0.5, 0.25]},
    }


def test_header_states_command_threads_and_load():
    one, two = "\n".join(header_lines("T", _record(1))), "\n".join(header_lines("T", _record(2)))
    assert one.startswith("# T\n") and "Command: `equidmri bench x`" in one
    assert "2 CPU cores, 1 thread, device `cpu`" in one and "2 CPU cores, 2 threads, device" in two
    assert "0.50 / 0.25 / 0.12 at the start, 1.00 / 0.50 / 0.25 at the end" in one
