"""Where the command line's messages go: one log on stderr, with ``-q``/``-v`` levels, warnings included.

The package's own messages, Python warnings (the package's and third-party ones, each distinct one once,
in one line, without the source line Python would echo) and nibabel's header reports all pass through :mod:`logging`, so
``-q`` leaves only errors and ``-v``/``-vv`` add information and debugging messages.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
WARNINGS_LOGGER = "py.warnings"  # the name logging.captureWarnings uses
LOGGERS = ("equidmri", WARNINGS_LOGGER, "nibabel")  # their levels follow -q/-v
NIBABEL_LOGGER = "nibabel.global"  # has a stderr handler of its own, which would bypass the levels


def log_level(verbose: int, quiet: bool) -> int:
    """``logging`` level of the options: ERROR with ``-q``, else WARNING, INFO (``-v``) or DEBUG (``-vv``)."""
    return logging.ERROR if quiet else max(logging.DEBUG, logging.WARNING - 10 * verbose)


class WarningLog:
    """``warnings.showwarning`` replacement: each distinct warning once, as one log line ``Category: message``."""

    def __init__(self) -> None:
        self.seen: set[tuple[type, str]] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG002
        text = " ".join(str(message).split())  # dipy's messages span lines
        if (category, text) not in self.seen:
            self.seen.add((category, text))
            logging.getLogger(WARNINGS_LOGGER).warning("%s: %s", category.__name__, text)


@contextmanager
def command_logging(verbose: int = 0, quiet: bool = False) -> Iterator[None]:
    """Route the messages of one command to one stderr log at the options' level; restore on exit."""
    logging.basicConfig(format=LOG_FORMAT)  # no-op when the root logger already has a handler
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    nibabel = logging.getLogger(NIBABEL_LOGGER)
    nibabel_handlers = list(nibabel.handlers)
    with warnings.catch_warnings():
        warnings.showwarning = WarningLog()
        for logger in loggers:
            logger.setLevel(log_level(verbose, quiet))
        for handler in nibabel_handlers:
            nibabel.removeHandler(handler)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
            for handler in nibabel_handlers:
                nibabel.addHandler(handler)
