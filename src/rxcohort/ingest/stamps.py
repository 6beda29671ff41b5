"""File stamps: which delivered files need not be read again to know they are unchanged.

Checking a file (:func:`rxcohort.ingest.delivery.check_file`) reads and hashes every byte; at
NorPD's size that is most of an unchanged refresh. After each load the ingest records, per
file it holds in bronze, a *stamp* - the file's device and inode (which file on disk it is),
size and modification time (nanoseconds) with the SHA-256 it had - in
``<warehouse>/_rxcohort_file_stamps.json``. A later ingest takes a file as unchanged without
reading it when all of these hold:

- the stamp's device, inode, size and modification time equal the file's now (a hard link
  to the file, in another delivery directory, is the same file);
- the stamp's SHA-256 is the one ``bronze/files`` holds for the file (so a stamp left by a
  load that did not commit is never trusted);
- the manifest, when it lists the file, gives that same SHA-256.

A copy of the delivery elsewhere (other inodes) is read and hashed once, and stamped.
``--verify`` reads and hashes every file whatever its stamp. The stamps are a cache: a missing
or unreadable stamp file only means every file is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from rxcohort.ingest.delivery import CheckedFile, DeliveryFile
from rxcohort.log import get_logger

STAMPS_FILE = "_rxcohort_file_stamps.json"
_FORMAT = 1

log = get_logger("ingest")


@dataclass(frozen=True)
class FileStamp:
    device: int
    inode: int
    size_bytes: int
    mtime_ns: int
    sha256: str


def stamp_of(file: DeliveryFile, sha256: str = "") -> FileStamp:
    """The stamp of ``file`` as it is on disk now, with ``sha256``. Taken before the file is
    read, it is never newer than the bytes hashed: a file changed while being read does not
    match its stamp afterwards."""
    stat = file.path.stat()
    return FileStamp(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, sha256)


def read_stamps(warehouse: str | Path) -> dict[str, FileStamp]:
    """source_file -> stamp; empty when there is no stamp file or it cannot be read."""
    path = Path(warehouse) / STAMPS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT:
            return {}
        return {name: FileStamp(**fields) for name, fields in data["files"].items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("ignoring %s (%s): every file is read again", STAMPS_FILE, type(exc).__name__)
        return {}


def write_stamps(warehouse: str | Path, stamps: Mapping[str, FileStamp]) -> None:
    """Replace the stamp file (written beside it, then renamed into place)."""
    path = Path(warehouse) / STAMPS_FILE
    partial = path.with_name(f".{path.name}.partial")
    body = {"format": _FORMAT, "files": {k: asdict(stamps[k]) for k in sorted(stamps)}}
    partial.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


def unchanged_file(
    file: DeliveryFile,
    *,
    stamp: FileStamp | None,
    registered: Mapping[str, object] | None,
    expected_sha256: str | None,
) -> CheckedFile | None:
    """``file`` as last checked, rebuilt from its ``bronze/files`` row (``registered``), when
    its stamp shows it has not changed since (see the module docstring); else None."""
    if stamp is None or registered is None:
        return None
    sha = str(registered["sha256"])
    if stamp.sha256 != sha or (expected_sha256 is not None and expected_sha256.lower() != sha):
        return None
    try:
        now = stamp_of(file, sha)
    except OSError:
        return None
    if now != stamp or registered["delivered_as"] != file.relpath:
        return None
    lines, blank, rows = (int(registered[k]) for k in ("lines", "blank_lines", "rows"))  # type: ignore[call-overload]
    # rows = records - 1 - blank, records = lines - continuations (CheckedFile).
    return CheckedFile(
        file,
        sha,
        int(registered["size_bytes"]),  # type: ignore[call-overload]
        header=(),  # not needed: an unchanged file is not read into bronze again
        lines=lines,
        blank_lines=blank,
        continuations=lines - 1 - blank - rows,
    )


def updated_stamps(
    before: Mapping[str, FileStamp], fresh: Mapping[str, FileStamp], *, keep: Iterable[str]
) -> dict[str, FileStamp]:
    """The stamps after a load: the ``fresh`` ones (of the files read this time) replace
    earlier ones; earlier stamps of files not in bronze (not in ``keep``) are dropped."""
    names = set(keep)
    out = {name: stamp for name, stamp in before.items() if name in names}
    out.update(fresh)
    return out
