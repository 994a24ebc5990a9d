"""Benchmarks and experiments behind ``equidmri bench``.

Each module registers one subcommand (``add_parser``) and writes a JSON record and a markdown page, by
default into ``docs/results/`` of the working directory (``--out DIR`` elsewhere, created if needed);
:mod:`equidmri.bench.report` holds what they share. Benchmarks measure and report only: the methods they run
come from :mod:`equidmri.methods`, the layers from :mod:`equidmri.nn.layers`.
"""
