"""One writer at a time per warehouse.

Every command that writes a warehouse (``ingest``, ``run``, ``report``, ``demo`` and the
``jobs/`` scripts) holds its lock from before the engine starts until it ends; readers
(``sql``, ``tables``, ``history``, ``export``) never take it. Two writers on one warehouse
would otherwise interleave their commits: two ingests, each rebuilding silver from the bronze
it saw, can leave a warehouse that equals neither order of the two.

The lock is an operating-system lock (``flock``) on ``<warehouse>/_rxcohort_lock.json``. The
kernel (or the NFS server, for a warehouse on NFS) releases it when the holder's process ends,
however it ends: a crashed or killed writer never leaves the warehouse locked. The file itself
stays and records the holder - command, process id, host, user, start time - so that a second
writer can name who it is waiting for, and so that the next holder can tell that the previous
one ended without releasing it (``released: false``): that writer crashed or was killed, and
the next holder says so. ``rxcohort lock`` shows the record; ``rxcohort lock --clear`` clears a
crashed writer's record (it never takes a lock away from a live process: stop that process).

Within one process the lock is re-entrant: ``run`` holds it and the report it writes takes it
again without waiting for itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rxcohort.errors import RxCohortError
from rxcohort.log import get_logger

log = get_logger("lock")

LOCK_FILE = "_rxcohort_lock.json"
_POLL_SECONDS = 0.25


class WarehouseBusyError(RxCohortError):
    """Another process holds the warehouse's write lock."""

    exit_code = 4


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a warehouse's lock, as its lock file records it."""

    command: str
    pid: int
    host: str
    user: str
    started_at: str
    released: bool

    def describe(self) -> str:
        return f"`{self.command}` (process {self.pid} on {self.host}, user {self.user}, since {self.started_at})"

    @classmethod
    def read(cls, path: Path) -> Holder | None:
        try:
            raw = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                command=str(raw["command"]),
                pid=int(raw["pid"]),
                host=str(raw["host"]),
                user=str(raw["user"]),
                started_at=str(raw["started_at"]),
                released=bool(raw["released"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class _Held:
    fd: int
    holder: Holder
    depth: int = 1


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def lock_path(warehouse: str | Path) -> Path:
    return Path(warehouse) / LOCK_FILE


@contextlib.contextmanager
def warehouse_lock(
    warehouse: str | Path,
    *,
    command: str,
    wait_seconds: float = 0.0,
    create: bool = False,
    say: Callable[[str], None] | None = None,
) -> Iterator[Holder]:
    """Hold the write lock of ``warehouse`` for the block.

    A held lock is waited for up to ``wait_seconds`` (0: not at all), then
    :class:`WarehouseBusyError` names the holder. ``create`` makes the warehouse directory
    when it does not exist (the ingest); otherwise a missing warehouse is an error.
    """
    root = Path(warehouse).resolve()
    key = str(root)
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            held.depth += 1
    if held is not None:
        try:
            yield held.holder
        finally:
            with _GUARD:
                held.depth -= 1
        return
    held = _acquire(root, command=command, wait_seconds=wait_seconds, create=create, say=say)
    with _GUARD:
        _HELD[key] = held
    try:
        yield held.holder
    finally:
        with _GUARD:
            _HELD.pop(key, None)
        _release(root, held)


def _acquire(
    root: Path,
    *,
    command: str,
    wait_seconds: float,
    create: bool,
    say: Callable[[str], None] | None,
) -> _Held:
    if not root.is_dir():
        if not create:
            raise RxCohortError(f"warehouse {root} does not exist")
        root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = Holder.read(path)
                who = holder.describe() if holder else "another process"
                if time.monotonic() >= deadline:
                    raise WarehouseBusyError(
                        f"warehouse {root} is being written by {who}; wait for it to finish "
                        "or give --wait SECONDS"
                    ) from None
                if not told and say is not None:
                    say(f"waiting for {who} to finish writing the warehouse")
                    told = True
                time.sleep(_POLL_SECONDS)
            except OSError as exc:
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise RxCohortError(
                        f"the file system of {root} does not support file locks; put the "
                        "warehouse on a local disk or a mount with locking (NFS with lockd)"
                    ) from exc
                raise
        previous = Holder.read(path)
        if previous is not None and not previous.released:
            log.warning(
                "the previous writer of this warehouse, %s, ended without releasing its lock "
                "(it crashed or was killed)",
                previous.describe(),
            )
        holder = Holder(
            command=command,
            pid=os.getpid(),
            host=socket.gethostname(),
            user=_user(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            released=False,
        )
        _write_record(fd, holder)
        _remove_leftovers(root)
        return _Held(fd=fd, holder=holder)
    except BaseException:
        os.close(fd)
        raise


def _remove_leftovers(root: Path) -> None:
    # Safe only now: with the lock held no other writer is between staging and committing.
    from rxcohort.io.staged import remove_leftovers

    removed = remove_leftovers(root)
    if removed:
        log.info("removed %d directories an interrupted writer left in the warehouse", removed)


def _release(root: Path, held: _Held) -> None:
    try:
        _write_record(held.fd, _released(held.holder))
    except OSError:
        log.warning("could not record the release of the lock of %s", root)
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)


def _released(holder: Holder) -> Holder:
    return Holder(**{**holder.__dict__, "released": True})


def _write_record(fd: int, holder: Holder) -> None:
    data = json.dumps(holder.__dict__, indent=2, sort_keys=True).encode() + b"\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return str(os.getuid())


# -- rxcohort lock -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LockState:
    """What ``rxcohort lock`` reports: held now or not, and the last holder's record."""

    held: bool
    holder: Holder | None

    def describe(self) -> str:
        if self.held:
            who = self.holder.describe() if self.holder else "another process"
            return f"locked: {who} is writing"
        if self.holder is None:
            return "not locked; no writer has locked this warehouse yet"
        if not self.holder.released:
            return (
                f"not locked; the last writer, {self.holder.describe()}, ended without "
                "releasing the lock (it crashed or was killed)"
            )
        return f"not locked; the last writer was {self.holder.describe()}"


def lock_state(warehouse: str | Path) -> LockState:
    """The warehouse's lock now, without waiting (and without taking it for longer than a test)."""
    path = lock_path(warehouse)
    if not path.is_file():
        return LockState(held=False, holder=None)
    if _held_here(Path(warehouse)):
        return LockState(held=True, holder=Holder.read(path))
    with _probe(path) as fd:
        return LockState(held=fd is None, holder=Holder.read(path))


def clear_stale_record(warehouse: str | Path) -> Holder | None:
    """Mark a crashed writer's record as released and return it (None: nothing to clear).

    Refuses while a live process holds the lock: that lock is never taken away.
    """
    path = lock_path(warehouse)
    if not path.is_file():
        return None
    with _probe(path) as fd:
        holder = Holder.read(path)
        if fd is None:
            who = holder.describe() if holder else "another process"
            stop = f"kill {holder.pid} on {holder.host}" if holder else "stop that process"
            raise WarehouseBusyError(
                f"{who} holds the lock of {warehouse} and is alive; a live writer's lock is not "
                f"taken away: stop that process ({stop})"
            )
        if holder is None or holder.released:
            return None
        _write_record(fd, _released(holder))
        return holder


@contextlib.contextmanager
def _probe(path: Path) -> Iterator[int | None]:
    """The lock file's descriptor with the lock taken for the block, or None when a live
    process holds it."""
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _held_here(warehouse: Path) -> bool:
    with _GUARD:
        return str(warehouse.resolve()) in _HELD
