"""Benchmarks and experiments behind ``equidmri bench``.

Each benchmark is two modules: ``equidmri.bench.options.<module>`` registers its subcommand (``add_parser``:
description, options, defaults, without torch) and ``equidmri.bench.<module>`` runs it (``run(args)``),
writing a JSON record and a markdown page, by default into ``docs/results/`` of the working directory
(``--out DIR`` elsewhere, created if needed); :mod:`equidmri.bench.catalog` pairs them and
:mod:`equidmri.bench.report` holds what they share. Benchmarks measure and report only: the methods they run
come from :mod:`equidmri.methods`, the layers from :mod:`equidmri.nn.layers`.
"""
