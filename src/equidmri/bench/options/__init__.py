"""The options of each ``equidmri bench`` subcommand, built without torch, numpy or dipy.

``equidmri.bench.options.<module>`` registers the parser of the benchmark that ``equidmri.bench.<module>``
runs (:data:`equidmri.bench.catalog.BENCHES` pairs them): its description (the module's docstring), options,
defaults and help texts, and the settings they show, which the benchmark imports from here. So
``equidmri bench NAME --help`` and argument errors answer at once, and :mod:`equidmri.cli.bench` imports the
benchmark's own module, with torch, only when the command runs.
"""
