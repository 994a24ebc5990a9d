"""Finished runs of a long benchmark, one JSON file each, so that the benchmark can stop and resume.

A long table (``equidmri bench table`` in its full setting takes hours on 2 cores) is made of independent
runs: one method, one angular resolution, one seed. Each finished run is written at once to
``FOLDER/<method>_<resolution>_<seed>.json`` together with the settings that produced it, the git commit
and the date. With ``--resume`` a later invocation reads every stored run of the same settings instead of
repeating it; two processes may fill one folder with different methods at the same time. A stored run of
other settings is refused (:meth:`RunStore.get`), never silently mixed in.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

from equidmri.bench.machine import git_commit
from equidmri.dmri.io import save_json

__all__ = ["RunStore"]


class RunStore:
    """Stored runs under ``folder``, each tagged with the settings that changed its result.

    Parameters
    ----------
    folder : Path
        Where the run files live (created on the first :meth:`put`).
    resume : bool
        Read stored runs (:meth:`get`); otherwise every run is made again and its file overwritten.
    shared : dict, optional
        Settings every run depends on (e.g. the data), added to the per-run ``settings`` of :meth:`get` and
        :meth:`put`.
    """

    def __init__(self, folder: Path, resume: bool, shared: dict[str, Any] | None = None) -> None:
        self.folder, self.resume, self.shared = Path(folder), resume, dict(shared or {})

    def path(self, method: str, resolution: str, seed: int | None) -> Path:
        """``FOLDER/<method slug>_<resolution>_<seed or 'fit'>.json``."""
        slug = re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")
        return self.folder / f"{slug}_{resolution}_{'fit' if seed is None else f'seed{seed}'}.json"

    def stored(self) -> list[Path]:
        """The run files present now."""
        return sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []

    def get(self, method: str, resolution: str, seed: int | None, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The stored run (with its ``commit`` and ``date``), or None if absent or not resuming.

        ``settings`` (JSON-friendly) and the store's ``shared`` ones are everything that changes this run's
        result: data, epochs, network...

        Raises
        ------
        ValueError
            If the stored run was made with other ``settings``, naming those that differ.
        """
        path = self.path(method, resolution, seed)
        if not self.resume or not path.exists():
            return None
        stored, settings = json.loads(path.read_text()), json.loads(json.dumps({**self.shared, **settings}))
        theirs = stored["settings"]
        changed = sorted(k for k in {*theirs, *settings} if theirs.get(k) != settings.get(k))
        if changed:
            raise ValueError(
                f"{path} was made with other settings ({', '.join(changed)}); use --force to make every run again"
            )
        return {**stored["run"], "commit": stored["commit"], "date": stored["date"]}

    def put(
        self, method: str, resolution: str, seed: int | None, settings: dict[str, Any], run: dict[str, Any]
    ) -> dict[str, Any]:
        """Write ``run`` atomically with its ``settings`` (and the ``shared`` ones), the commit and the date;
        return it with ``commit`` and ``date``."""
        now = datetime.datetime.now(datetime.timezone.utc)
        stamp = {"commit": git_commit(), "date": now.isoformat(timespec="seconds")}
        self.folder.mkdir(parents=True, exist_ok=True)
        save_json(
            self.path(method, resolution, seed),
            {"settings": {**self.shared, **settings}, **stamp, "run": run},
            force=True,
        )
        return {**run, **stamp}
