"""The incoming Asset's watcher (etl/incoming_watch.py), its run() driven on real folders: one event for each batch
handed off, none for what is not a batch (hostile entries are never opened), none again for a batch that waits or
comes back from its claim, a missing folder logged and watched; and the trigger rebuilt from its serialize()."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from airflow._shared.module_loading import import_string  # what the triggerer loads a trigger class with
from airflow.triggers.base import BaseEventTrigger
from structlog.testing import capture_logs

from etl import scoring
from etl.incoming_watch import BATCH_SUFFIX, CLAIMED, NAME_CHARS, NAMED_BATCHES, IncomingBatchTrigger, payload
from tests.support.scoring import hand_off_batch

POLL = 0.02  # seconds between two looks
WAIT = 15 * POLL  # long enough for several looks
BATCH = b"Id,Cl.thickness\n1,5\n"


@contextlib.asynccontextmanager
async def watching(folder: Path) -> AsyncIterator[list[dict[str, Any]]]:
    """The trigger's run() on `folder` in the background; the payloads of its events, as they come."""
    payloads: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in IncomingBatchTrigger(folder=str(folder), poll_seconds=POLL).run():
            payloads.append(event.payload)

    task = asyncio.create_task(collect())
    try:
        yield payloads
    finally:
        if task.done():
            task.result()  # run() never ends: raise what ended it
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `condition()` holds (looks run in a thread: a loaded machine may be slow)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(POLL)


def test_a_handed_off_batch_fires_once_however_long_it_waits(tmp_path: Path):
    async def scenario() -> list[dict[str, Any]]:
        incoming = tmp_path / "incoming"
        incoming.mkdir()
        async with watching(incoming) as payloads:
            (incoming / "clinic_a.csv.part").write_bytes(BATCH)
            await asyncio.sleep(WAIT)
            assert payloads == []  # still being written
            (incoming / "clinic_a.csv.part").rename(incoming / "clinic_a.csv")
            await until(lambda: len(payloads) == 1)
            await asyncio.sleep(3 * WAIT)
            return payloads

    assert asyncio.run(scenario()) == [{"batches": ["clinic_a.csv"], "count": 1}]


def hostile_entries(incoming: Path, outside: Path) -> Path:
    """Every entry of INCOMING_DIR that is not a batch, the scorer's own files among them; returns the FIFO."""
    fifo = incoming / "fifo.csv"
    os.mkfifo(fifo)
    (incoming / "folder.csv").mkdir()
    outside.write_bytes(BATCH)
    (incoming / "link.csv").symlink_to(outside)
    (incoming / "fifo_link.csv").symlink_to(fifo)
    (incoming / "dangling.csv").symlink_to(incoming / "nothing")
    with contextlib.suppress(PermissionError):  # a device needs root
        os.mknod(incoming / "null.csv", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    for name in ("writing.csv.part", ".hidden.csv", "clinic_b.error.json", ".claimed/left.csv~1-ab",
                 "rejected/20261204T000000Z_ab_old.csv", "rejected/20261204T000000Z_ab_old.csv.reason.json"):
        (incoming / name).parent.mkdir(exist_ok=True)
        (incoming / name).write_bytes(BATCH)
    return fifo


def test_entries_that_are_not_batches_never_fire_and_are_never_opened(tmp_path: Path):
    async def scenario() -> tuple[list[dict[str, Any]], Path]:
        incoming = tmp_path / "incoming"
        incoming.mkdir()
        fifo = hostile_entries(incoming, tmp_path / "outside.csv")
        async with watching(incoming) as payloads:
            await asyncio.sleep(WAIT)
            assert payloads == []
            hand_off_batch(incoming, "clinic_a", BATCH)  # the looks go on: nothing blocked them
            await until(lambda: len(payloads) == 1)
            await asyncio.sleep(WAIT)
            return payloads, fifo

    payloads, fifo = asyncio.run(scenario())
    assert payloads == [{"batches": ["clinic_a.csv"], "count": 1}]
    with pytest.raises(OSError) as no_reader:  # nobody ever opened the FIFO, nor waits in open() for a writer
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert no_reader.value.errno == errno.ENXIO


def test_a_bad_batch_back_from_its_claim_does_not_fire_again_a_fixed_one_and_a_later_batch_do(tmp_path: Path):
    async def scenario() -> list[dict[str, Any]]:
        incoming = tmp_path / "incoming"
        async with watching(incoming) as payloads:
            hand_off_batch(incoming, "clinic_b", b"Id,Cl.thickness\n1,x\n")
            await until(lambda: len(payloads) == 1)
            # What the scorer does with a bad batch: claims it, writes its report, puts it back.
            (incoming / CLAIMED).mkdir()
            claim = incoming / CLAIMED / "clinic_b.csv~123-abcdef"
            (incoming / "clinic_b.csv").rename(claim)
            await asyncio.sleep(WAIT)
            (incoming / "clinic_b.error.json").write_text('{"error": "Cl.thickness: not a score"}')
            claim.rename(incoming / "clinic_b.csv")
            await asyncio.sleep(3 * WAIT)
            assert len(payloads) == 1
            hand_off_batch(incoming, "clinic_b", BATCH)  # fixed, under the same name
            await until(lambda: len(payloads) == 2)
            hand_off_batch(incoming, "clinic_c", BATCH)
            await until(lambda: len(payloads) == 3)
            await asyncio.sleep(WAIT)
            return payloads

    assert asyncio.run(scenario()) == [{"batches": ["clinic_b.csv"], "count": 1},
                                       {"batches": ["clinic_b.csv"], "count": 1},
                                       {"batches": ["clinic_c.csv"], "count": 1}]


@pytest.mark.parametrize("in_its_place", [None, "a file"])
def test_a_folder_that_cannot_be_listed_is_logged_once_and_watched_until_it_can(tmp_path: Path,
                                                                                 in_its_place: str | None):
    incoming = tmp_path / "incoming"
    if in_its_place:
        incoming.write_text(in_its_place)

    async def scenario() -> list[dict[str, Any]]:
        async with watching(incoming) as payloads:
            await asyncio.sleep(WAIT)
            incoming.unlink(missing_ok=True)
            hand_off_batch(incoming, "clinic_a", BATCH)
            await until(lambda: len(payloads) == 1)
            return payloads

    with capture_logs() as logs:  # Airflow's triggers log through structlog
        assert asyncio.run(scenario()) == [{"batches": ["clinic_a.csv"], "count": 1}]
    messages = [entry["event"] for entry in logs]
    expected = "Not a directory" if in_its_place else "No such file or directory"
    assert [message for message in messages if "cannot be listed" in message] == [
        f"INCOMING_DIR {incoming} cannot be listed ({expected}); watching it until it can be"]
    assert f"INCOMING_DIR {incoming} can be listed again" in messages


def test_an_event_names_the_batches_cut_short_and_no_path(tmp_path: Path):
    async def scenario() -> list[dict[str, Any]]:
        incoming = tmp_path / "incoming"
        incoming.mkdir()
        for index in range(NAMED_BATCHES + 5):
            (incoming / f"batch_{index:02d}.csv").write_bytes(BATCH)
        (incoming / f"{'x' * 240}.csv").write_bytes(BATCH)  # a name the scorer refuses; it is the scorer's call
        async with watching(incoming) as payloads:
            await until(lambda: len(payloads) == 1)
            await asyncio.sleep(WAIT)
            return payloads

    (event,) = asyncio.run(scenario())
    assert event["count"] == NAMED_BATCHES + 6
    assert event["batches"] == [f"batch_{index:02d}.csv" for index in range(NAMED_BATCHES)]
    assert str(tmp_path) not in json.dumps(event)
    assert payload(["y" * 300 + ".csv"])["batches"][0] == "y" * NAME_CHARS + "…"


def test_the_triggerer_rebuilds_the_trigger_from_its_serialize():
    classpath, kwargs = IncomingBatchTrigger(folder="/srv/incoming", poll_seconds=2.5).serialize()
    assert (classpath, kwargs) == ("etl.incoming_watch.IncomingBatchTrigger",
                                   {"folder": "/srv/incoming", "poll_seconds": 2.5})
    rebuilt = import_string(classpath)(**json.loads(json.dumps(kwargs)))
    assert isinstance(rebuilt, BaseEventTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert BaseEventTrigger.hash(*rebuilt.serialize()) == BaseEventTrigger.hash(classpath, kwargs)


def test_the_watch_uses_the_scorers_names():
    assert (BATCH_SUFFIX, CLAIMED) == (scoring.BATCH_SUFFIX, scoring.CLAIMED)
    longest = "a" * (NAME_CHARS - len(BATCH_SUFFIX))
    assert scoring.BATCH_NAME.fullmatch(longest) and not scoring.BATCH_NAME.fullmatch(longest + "a")
