"""Find and check a delivery's files before anything is read into Spark or written.

Every contract file is streamed once in plain Python: its SHA-256 (checked against the manifest
when the manifest lists it), that it decompresses (a truncated ``.csv.gz`` fails here), that
every line is UTF-8, that the header names exactly the contract's columns with ``;`` between
them, and how many lines it has (Spark's count must agree later). Any problem raises
:class:`~rxcohort.errors.DeliveryError` with one line naming the file and the problem, and the
ingest stops before any table is touched.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rxcohort.errors import DeliveryError
from rxcohort.ingest.records import QUOTE, RecordSplitter
from rxcohort.schemas import RAW_COLUMNS

TOP_LEVEL_TABLES = ("persons", "prescribers")
DISPENSINGS_DIR = "dispensings"
_YEAR_FILE = re.compile(r"^dispensings_(\d{4})\.csv(\.gz)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OTHER_SEPARATORS = (",", "\t", "|")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DeliveryFile:
    """One contract file of a delivery.

    ``name`` is the file's identity in the warehouse (its ``source_file``): the file name without
    ``.gz``, so a corrected re-delivery replaces the earlier rows whether or not it is compressed.
    """

    table: str
    name: str
    relpath: str
    path: Path
    year: int | None
    compressed: bool


@dataclass(frozen=True)
class Manifest:
    registry: str | None
    extract_date: date | None
    period_start: date | None
    period_end: date | None
    files: dict[str, str] | None
    sha256: str


@dataclass(frozen=True)
class Delivery:
    directory: Path
    manifest: Manifest | None
    files: tuple[DeliveryFile, ...]
    ignored: tuple[str, ...]

    @property
    def period(self) -> tuple[date | None, date | None]:
        """The delivery period: the manifest's, else 1 January to 31 December of the file years."""
        if self.manifest and self.manifest.period_start and self.manifest.period_end:
            return self.manifest.period_start, self.manifest.period_end
        years = [f.year for f in self.files if f.year is not None]
        if not years:
            return None, None
        return date(min(years), 1, 1), date(max(years), 12, 31)

    @property
    def period_source(self) -> str:
        if self.manifest and self.manifest.period_start and self.manifest.period_end:
            return "manifest"
        return "file_years"


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed every check, with what the checks measured."""

    file: DeliveryFile
    sha256: str
    size_bytes: int
    header: tuple[str, ...]
    lines: int  # every line, the header included
    blank_lines: int  # lines with nothing but spaces after the header: not rows
    # Lines that continue a quoted field of the line before them (rxcohort.ingest.records).
    continuations: int = 0

    @property
    def records(self) -> int:
        """Records, the header and blank lines included (what bronze numbers)."""
        return self.lines - self.continuations

    @property
    def rows(self) -> int:
        return self.records - 1 - self.blank_lines


def scan_delivery(directory: str | Path) -> Delivery:
    """List the contract files of ``directory`` and read its manifest; no file content is read."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DeliveryError(f"{directory}: no such delivery directory")
    manifest = read_manifest(directory / "manifest.json")
    files: list[DeliveryFile] = []
    ignored: list[str] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or entry.name == "manifest.json":
            continue
        if entry.is_dir():
            if entry.name != DISPENSINGS_DIR:
                ignored.append(entry.name + "/")
            continue
        table = _top_level_table(entry.name)
        if table is not None:
            files.append(_delivery_file(directory, entry, table, None))
        elif entry.name.endswith((".csv", ".csv.gz")):
            raise DeliveryError(f"{entry.name}: not a file of the delivery contract")
        else:
            ignored.append(entry.name)
    dispensings_dir = directory / DISPENSINGS_DIR
    if dispensings_dir.is_dir():
        for entry in sorted(dispensings_dir.iterdir()):
            if entry.name.startswith("."):
                continue
            match = _YEAR_FILE.match(entry.name)
            if not match or not entry.is_file():
                raise DeliveryError(
                    f"{DISPENSINGS_DIR}/{entry.name}: not a dispensings_<YYYY>.csv file"
                )
            files.append(_delivery_file(directory, entry, "dispensings", int(match.group(1))))

    seen: dict[str, DeliveryFile] = {}
    for f in files:
        if f.name in seen:
            raise DeliveryError(f"{f.relpath}: delivered twice (also {seen[f.name].relpath})")
        seen[f.name] = f
    for table in TOP_LEVEL_TABLES:
        if not any(f.table == table for f in files):
            raise DeliveryError(f"{directory}: {table}.csv is missing")
    if not any(f.table == "dispensings" for f in files):
        raise DeliveryError(f"{directory}: no dispensings/dispensings_<YYYY>.csv file")
    if manifest is not None and manifest.files is not None:
        listed = set(manifest.files)
        present = {f.relpath for f in files}
        for missing in sorted(listed - present):
            raise DeliveryError(f"{missing}: listed in manifest.json but not delivered")
        for extra in sorted(present - listed):
            raise DeliveryError(f"{extra}: delivered but not listed in manifest.json")
    return Delivery(directory, manifest, tuple(files), tuple(ignored))


def _top_level_table(name: str) -> str | None:
    for table in TOP_LEVEL_TABLES:
        if name in (f"{table}.csv", f"{table}.csv.gz"):
            return table
    return None


def _delivery_file(root: Path, path: Path, table: str, year: int | None) -> DeliveryFile:
    relpath = path.relative_to(root).as_posix()
    compressed = path.name.endswith(".gz")
    name = path.name[: -len(".gz")] if compressed else path.name
    return DeliveryFile(table, name, relpath, path, year, compressed)


def read_manifest(path: Path) -> Manifest | None:
    """Parse ``manifest.json`` (optional); a malformed one stops the ingest."""
    if not path.is_file():
        return None
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeliveryError(f"manifest.json: not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DeliveryError("manifest.json: expected a JSON object")
    registry = data.get("registry")
    if registry is not None and not isinstance(registry, str):
        raise DeliveryError("manifest.json: registry must be a string")
    extract_date = _manifest_date(data.get("extract_date"), "extract_date")
    period = data.get("period")
    start = end = None
    if period is not None:
        if not isinstance(period, list) or len(period) != 2:
            raise DeliveryError("manifest.json: period must be [start, end]")
        start = _manifest_date(period[0], "period start")
        end = _manifest_date(period[1], "period end")
        if start and end and start > end:
            raise DeliveryError("manifest.json: period starts after it ends")
    files = data.get("files")
    if files is not None:
        if not isinstance(files, dict):
            raise DeliveryError("manifest.json: files must map file paths to sha256")
        clean: dict[str, str] = {}
        for key, value in files.items():
            if not isinstance(value, str) or not _SHA256.match(value.lower()):
                raise DeliveryError(f"manifest.json: the sha256 of {key} is not 64 hex digits")
            clean[str(key).replace("\\", "/").lstrip("./")] = value.lower()
        files = clean
    return Manifest(registry, extract_date, start, end, files, hashlib.sha256(raw).hexdigest())


def _manifest_date(value: object, what: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise DeliveryError(f"manifest.json: {what} is not a YYYY-MM-DD date") from exc


def check_file(file: DeliveryFile, *, expected_sha256: str | None = None) -> CheckedFile:
    """Stream the file once: hash, decompress, decode, header, line counts.

    The decompressed bytes are checked a block of whole lines at a time (C speed: a NorPD
    year holds tens of millions of lines). Lines end in ``\n`` or ``\r\n``; a bare ``\r``
    inside a line is refused, as is anything that is not UTF-8, naming the line.
    """
    hasher = hashlib.sha256()
    size = file.path.stat().st_size
    header: tuple[str, ...] | None = None
    lines = blank = 0
    splitter = RecordSplitter()
    try:
        with file.path.open("rb") as raw:
            hashing = _HashingReader(raw, hasher.update)
            stream: Any = hashing
            if file.compressed:
                stream = gzip.GzipFile(fileobj=hashing, mode="rb")  # type: ignore[arg-type]
            with stream if file.compressed else contextlib.nullcontext():
                for block in _line_blocks(stream):
                    _check_block(file, block, first_line=lines + 1)
                    if header is None:
                        first = block.split(b"\n", 1)[0].removesuffix(b"\r")
                        header = _check_header(file, first.decode("utf-8"))
                    lines += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
                    if splitter.quiet() and QUOTE not in block:
                        blank += _blank_lines(block)
                    else:  # a quoted field may hold a line break: count records
                        blank += _blank_records(splitter.feed(_lines_of(block)))
            blank += _blank_records(splitter.finish())
            hashing.drain()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DeliveryError(f"{file.relpath}: truncated or corrupt gzip file ({exc})") from exc
    except OSError as exc:
        raise DeliveryError(f"{file.relpath}: cannot be read ({exc})") from exc
    if header is None:
        raise DeliveryError(f"{file.relpath}: empty file (no header line)")
    sha = hasher.hexdigest()
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise DeliveryError(
            f"{file.relpath}: sha256 does not match manifest.json "
            f"(file {sha[:12]}…, manifest {expected_sha256.lower()[:12]}…)"
        )
    return CheckedFile(file, sha, size, header, lines, blank, splitter.continuations)


# A line with nothing but spaces (before an optional \r): not a row.
_BLANK_LINES = re.compile(rb"(?m)^ *\r?$")
# Where one may start after the first line (one pass of the pattern is several times faster
# than looking for each of its three byte pairs with ``in``: a newline is every hundred bytes).
_BLANK_START = re.compile(rb"\n[ \r\n]")
# A carriage return that does not end its line.
_BARE_CR = re.compile(rb"\r(?!\n|\Z)")


def _blank_lines(block: bytes) -> int:
    """Lines of nothing but spaces in a block of whole lines."""
    # They are rare: look for the start of one before counting them with the pattern.
    if not (block[:1] in (b" ", b"\r", b"\n") or _BLANK_START.search(block)):
        return 0
    # (?m)$ also matches after a block's last \n, where no line is.
    return len(_BLANK_LINES.findall(block)) - (1 if block.endswith(b"\n") else 0)


def _lines_of(block: bytes) -> list[bytes]:
    """The lines of a block of whole lines, without their \\n."""
    return (block[:-1] if block.endswith(b"\n") else block).split(b"\n")


def _blank_records(records: list[tuple[int, bytes]]) -> int:
    return sum(1 for number, record in records if number > 1 and not record.strip(b" \r"))


def _line_blocks(stream: Any) -> Iterator[bytes]:
    """The stream's bytes in blocks of whole lines (the last may lack its newline).

    Each block's bytes are copied once (the carried part of the last line joined to the
    whole lines of the next read): at a year of NorPD each copy is a gigabyte."""
    carry = b""
    while True:
        chunk = stream.read(_LINES_BLOCK)
        if not chunk:
            if carry:
                yield carry
            return
        cut = chunk.rfind(b"\n")
        if cut < 0:
            carry += chunk
            continue
        if carry:
            yield b"".join((carry, memoryview(chunk)[: cut + 1]))
        else:
            yield chunk if cut == len(chunk) - 1 else chunk[: cut + 1]
        carry = chunk[cut + 1 :]


def _check_block(file: DeliveryFile, block: bytes, *, first_line: int) -> None:
    bare = _BARE_CR.search(block)
    if bare is not None:
        line = first_line + block.count(b"\n", 0, bare.start())
        raise DeliveryError(
            f"{file.relpath}: line {line} holds a bare carriage return; "
            "the contract needs one row per line"
        )
    if _utf8(block):
        return
    try:  # not UTF-8: where, in Python's words
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + block.count(b"\n", 0, exc.start)
        byte = exc.start - (block.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DeliveryError(f"{file.relpath}: not UTF-8 (line {line}, byte {byte})") from exc


def _without_newline(block: bytes) -> memoryview:
    """The block without its last newline, not copied."""
    view = memoryview(block)
    return view[:-1] if block.endswith(b"\n") else view


def _one_value(data: bytes | memoryview) -> Any:
    """``data`` as an Arrow array of one binary value, without copying it."""
    import pyarrow as pa

    offsets = pa.py_buffer(struct.pack("<qq", 0, len(data)))
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])


def _utf8(block: bytes) -> bool:
    """Whether ``block`` is UTF-8, checked by Arrow (about twice as fast as decoding it)."""
    import pyarrow as pa

    try:
        _one_value(block).cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


# Decompressed bytes split into lines per block: large enough that the split runs in Arrow's
# C++ at memory speed, small enough to keep the ingest's memory flat.
_LINES_BLOCK = 64 << 20


def write_numbered_lines(checked: CheckedFile, target: Path) -> int:
    """Write every record of the checked file - a line, or the lines of a quoted field that
    holds a line break (:mod:`rxcohort.ingest.records`) - with the 1-based number of its first
    line, to ``target`` (Parquet: ``value`` string, ``line_number`` long); return the number
    of records.

    The lines are numbered here, once, in file order, rather than by an engine: engines read a
    file in parallel blocks and none promises to keep their order in its row ids. Line ends are
    as for :func:`check_file` (``\n``, or ``\r\n``; a bare ``\r`` was refused there). Raises
    DeliveryError when the count differs from the check's (the file changed meanwhile).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pa.schema([("value", pa.string()), ("line_number", pa.int64())])
    file = checked.file
    opener = gzip.open if file.compressed else open
    number = 1
    written = 0
    splitter = RecordSplitter()
    target.parent.mkdir(parents=True, exist_ok=True)

    def write_records(writer: Any, records: list[tuple[int, bytes]]) -> int:
        if records:
            values = [r.removesuffix(b"\r").decode("utf-8") for _, r in records]
            numbers = [n for n, _ in records]
            writer.write_table(pa.table({"value": values, "line_number": numbers}, schema=schema))
        return len(records)

    # Uncompressed and without dictionaries: the file is read once, by the engine, from the
    # scratch on this machine; encoding it would cost more than the bytes it saves.
    parquet = {"compression": "none", "use_dictionary": False}
    try:
        with (
            opener(file.path, "rb") as stream,
            pq.ParquetWriter(target, schema, **parquet) as writer,
        ):
            for block in _line_blocks(stream):
                n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
                if not (splitter.quiet() and QUOTE not in block):
                    # A quoted field may hold a line break: records, not lines (rare).
                    splitter.next_number = number if splitter.quiet() else splitter.next_number
                    written += write_records(writer, splitter.feed(_lines_of(block)))
                    number += n_lines
                    continue
                parts = pc.split_pattern(_one_value(_without_newline(block)), b"\n").flatten()
                if b"\r" in block:
                    parts = pc.replace_substring(parts, b"\r", b"")
                numbers = np.arange(number, number + n_lines, dtype=np.int64)
                writer.write_table(
                    pa.table({"value": parts.cast(pa.string()), "line_number": numbers}, schema)
                )
                number += n_lines
                written += n_lines
            written += write_records(writer, splitter.finish())
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError, pa.ArrowInvalid) as exc:
        raise DeliveryError(f"{file.relpath}: changed while it was being ingested ({exc})") from exc
    if number - 1 != checked.lines or written != checked.records:
        raise DeliveryError(
            f"{file.relpath}: {number - 1} lines read but the check counted {checked.lines}; "
            "was the file changed during the ingest?"
        )
    return written


def _check_header(file: DeliveryFile, text: str) -> tuple[str, ...]:
    text = text.removeprefix("\ufeff")
    expected = RAW_COLUMNS[file.table]
    names = tuple(n.strip().strip('"').strip() for n in text.split(";"))
    if len(names) == 1:
        found = next((s for s in _OTHER_SEPARATORS if s in text), None)
        if found is not None:
            shown = {"\t": "tab", ",": "','", "|": "'|'"}[found]
            raise DeliveryError(f"{file.relpath}: separator is {shown}, the contract says ';'")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DeliveryError(f"{file.relpath}: header repeats column(s) {', '.join(duplicated)}")
    missing = [c for c in expected if c not in names]
    if missing:
        raise DeliveryError(f"{file.relpath}: header lacks column(s) {', '.join(missing)}")
    unknown = [n for n in names if n not in expected]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise DeliveryError(f"{file.relpath}: header has column(s) not in the contract: {shown}")
    return names


class _HashingReader:
    """A reader that feeds every byte it reads to ``update`` (the SHA-256 of the file), read
    straight from the file (no buffer between: the blocks are large)."""

    def __init__(self, raw: io.BufferedIOBase, update: Callable[[bytes], object]) -> None:
        self._raw = raw
        self._update = update

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self._update(data)
        return data

    def drain(self) -> None:
        """Hash what the decompressor did not need (bytes after the gzip stream)."""
        while True:
            data = self._raw.read(_CHUNK)
            if not data:
                return
            self._update(data)
