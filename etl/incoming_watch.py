"""The incoming Asset's watcher: a batch handed off into INCOMING_DIR starts the scoring DAG by itself (Airflow 3
event-driven scheduling; the triggerer runs it). Standard library, airflow.triggers.base and utils.errors only. Not
the standard provider's FileDeleteTrigger or DirectoryFileDeleteTrigger: those delete the file they see and end.

Every POLL_SECONDS the trigger lists INCOMING_DIR with scandir and lstat, in a thread: nothing in the folder is
ever opened or read, so a FIFO, a device, a link or a folder named `x.csv` cannot block or fool it. A batch is a
regular file whose name ends in `.csv` and does not start with a dot (the scorer judges the rest: the name rule,
hard links); writers' `.part` files, the reports (`*.error.json`) and the scorer's folders (`.claimed`,
`rejected`) never fire. A missing or unreadable folder is logged once, naming it, and watched until it can be
listed.

One event names the batches that are new since the last look (their file names, cut short; no path), then the
trigger goes on watching: the triggerer continues the same generator after each event, and re-creates a trigger
from serialize() only when one has ended or the triggerer restarts. A batch is remembered by its inode, size and
modification time while it is in the folder or claimed in `.claimed/`: a waiting batch fires once, a bad batch put
back beside its `<name>.error.json` does not fire again, a new file (a fixed batch handed off under the same name)
does. The memory is the triggerer's own: after a restart, the batches still waiting fire once more; the scorer
claims each batch, so each is still scored once.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from utils.errors import excerpt

POLL_SECONDS = 5.0
BATCH_SUFFIX = ".csv"  # etl/scoring.py's, as is CLAIMED (a test keeps them equal; scoring is too heavy to import)
CLAIMED = ".claimed"
NAMED_BATCHES = 20  # an event names at most this many batches, and counts them all
NAME_CHARS = 104  # the longest batch file name the scorer takes: `<name>.csv`, <name> at most 100 characters
Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns: the same file, unchanged


def regular_files(folder: Path, suffix: str = "") -> dict[Identity, str]:
    """The regular files directly in `folder` whose names end in `suffix` and do not start with a dot, by their
    identity (scandir and lstat: nothing is opened)."""
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(suffix):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:  # gone since it was listed
                continue
            if stat.S_ISREG(info.st_mode):
                found[(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)] = entry.name
    return found


def look(folder: Path) -> tuple[dict[Identity, str], set[Identity]]:
    """The batches waiting in `folder`, by identity, and the identities of the batches a scorer has claimed (none
    when `.claimed` cannot be listed); OSError when `folder` cannot be listed."""
    waiting = regular_files(folder, BATCH_SUFFIX)
    try:
        return waiting, set(regular_files(folder / CLAIMED))
    except OSError:
        return waiting, set()


def payload(names: list[str]) -> dict[str, Any]:
    """What an event says: the new batches' file names (the first NAMED_BATCHES, cut short) and how many."""
    return {"batches": [excerpt(name, NAME_CHARS) for name in names[:NAMED_BATCHES]], "count": len(names)}


class IncomingBatchTrigger(BaseEventTrigger):
    """Fire when batches are handed off into `folder` (INCOMING_DIR), looking every `poll_seconds`."""

    def __init__(self, folder: str, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__()
        self.folder = folder
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and keyword arguments the triggerer re-creates the trigger from."""
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"folder": self.folder, "poll_seconds": self.poll_seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """One event for each look that finds new batches; never ends."""
        known: set[Identity] = set()
        problem = ""  # why the last look failed: logged once, not at every look
        while True:
            try:
                waiting, claimed = await asyncio.to_thread(look, Path(self.folder))
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                if reason != problem:
                    self.log.warning("INCOMING_DIR %s cannot be listed (%s); watching it until it can be",
                                     self.folder, reason)
                problem = reason
            else:
                if problem:
                    problem = ""
                    self.log.info("INCOMING_DIR %s can be listed again", self.folder)
                new = sorted(name for identity, name in waiting.items() if identity not in known)
                known = set(waiting) | claimed
                if new:
                    yield TriggerEvent(payload(new))
            await asyncio.sleep(self.poll_seconds)
