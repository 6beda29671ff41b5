"""Kept row keys: each bronze dispensings file's narrow keys, kept between loads.

An incremental load relates its changed rows to the rest of bronze through the rows' keys
(:func:`rxcohort.ingest.rules.dispensing_keys`: row key, id, person, product group, day,
return). Computing them reads and parses the whole of bronze, which at 1M persons is a large
part of a one-file correction. A file's keys depend on its bronze rows alone, and a load never
changes those rows once written: a changed file is loaded again, under a new load id. So the
keys of each file are kept in ``<warehouse>/_rxcohort_dispensing_keys/``, one folder per file
and load (Parquet), and are used as long as ``bronze/files`` names that load for that file.

Every load that writes dispensings (the first one included) computes the keys of the files
that have none kept, from its staged bronze, into its scratch; they are moved into the store
(a rename: a folder is there whole or not at all) only after the load has committed, and the
folders of files and loads that ``bronze/files`` no longer names are then deleted. A cache: a
missing folder only means the keys are computed again. A change to how keys are computed must
change :data:`KEYS_FORMAT`.

Inside each file's folder, its returns (the keys of its rows with packs below 0) in
``returns/``: an incremental load looks up the returns of the whole bronze, a few in a
thousand rows, and reads them from there rather than from every key (a folder without them,
kept by an earlier version, has its returns read from its keys).

Beside them, the hashes of the ids that repeat in bronze after the last load
(:func:`rxcohort.ingest.incremental.shared_ids`), in ``_shared-ids--<load_id>``: the next
load finds its own from them and its changed files (a missing folder: from all the keys).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from rxcohort.errors import RxCohortError
from rxcohort.ingest.rules import dispensing_keys, keys_of_checked
from rxcohort.log import get_logger

log = get_logger(__name__)

STORE_DIR = "_rxcohort_dispensing_keys"
RETURNS_DIR = "returns"
KEYS_FORMAT = "v1"
_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,120}")
SHARED_SCHEMA = StructType([StructField("_h", LongType())])
_SHARED = "_shared-ids--"  # + load id (load ids start with a digit: no file's entry is one)


def _entry(source_file: str, load_id: str) -> str:
    """The folder name of one file's keys as loaded by one load."""
    name = source_file if _SAFE.fullmatch(source_file) else _digest(source_file)
    return f"{load_id}--{name}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class KeyStore:
    """The kept keys of one warehouse, and the keys one load computes for it."""

    def __init__(self, spark: SparkSession, root: Path, scratch: Path) -> None:
        self.spark = spark
        self.store = root / STORE_DIR / KEYS_FORMAT
        self.scratch = scratch / "dispensing_keys"
        self.computed: dict[str, Path] = {}  # entry -> folder in the scratch

    def shared(self, load_id: str | None) -> DataFrame | None:
        """The id hashes kept by load ``load_id`` (the bronze as it left it), if there are."""
        folder = self.store / f"{_SHARED}{load_id}"
        if load_id is None or not folder.is_dir():
            return None
        files = [str(path) for path in sorted(folder.rglob("*.parquet")) if _data(path)]
        if not files:  # none repeats (an engine may write no file for no rows)
            return self.spark.createDataFrame([], SHARED_SCHEMA)
        return self.spark.read.schema(SHARED_SCHEMA).parquet(*files)

    def kept(self, source_file: str, load_id: str) -> Path | None:
        """The folder of a file's kept keys, if there are any."""
        folder = self.store / _entry(source_file, load_id)
        return folder if folder.is_dir() else None

    def keys(
        self, bronze: DataFrame, loads: Mapping[str, str], *, checked: DataFrame | None = None
    ) -> DataFrame:
        """The keys of every row of ``bronze`` (dispensings after this load), whose files
        and their load ids are ``loads``: kept ones read, the others computed into the
        scratch - from ``checked`` when given (every row of ``bronze`` as
        :func:`rxcohort.ingest.rules.classify_dispensings` checked it, already typed), else
        from each file's bronze, read alone (bronze is partitioned by file)."""
        folders = []
        for source_file, load_id in sorted(loads.items()):
            folder = self._folder(source_file, load_id)
            if folder is None:
                of_file = F.col("source_file") == source_file
                rows = (
                    dispensing_keys(bronze.where(of_file))
                    if checked is None
                    else keys_of_checked(checked.where(of_file))
                )
                folder = self._compute(rows, _entry(source_file, load_id))
            folders.append(folder)
        return self._read(folders, dispensing_keys(bronze))

    def returns(self, keys: DataFrame, loads: Mapping[str, str]) -> DataFrame:
        """The returns among ``keys``, which :meth:`keys` gave for the same ``loads``: from
        each file's kept returns, or from its keys where none are kept."""
        parts = []
        for source_file, load_id in sorted(loads.items()):
            folder = self._folder(source_file, load_id)
            if folder is None:
                raise RxCohortError(f"no keys for {source_file} (a bug: keys() comes first)")
            kept = folder / RETURNS_DIR
            if not kept.is_dir():
                parts.append(self._read([folder], keys).where(F.col("_return")))
            elif files := _data_files(kept):  # (a file without returns has none)
                parts.append(self._read_files(files, keys))
        out = keys.where(F.lit(False)) if not parts else parts[0]
        for part in parts[1:]:
            out = out.unionByName(part)
        return out

    def _folder(self, source_file: str, load_id: str) -> Path | None:
        """The folder of a file's keys, kept or computed by this load (None: neither)."""
        return self.kept(source_file, load_id) or self.computed.get(_entry(source_file, load_id))

    def keys_of(self, rows: DataFrame, source_file: str, load_id: str) -> DataFrame:
        """The keys of one file's rows as one load wrote them (``rows``: those bronze rows,
        read only when the keys are not kept)."""
        folder = self.kept(source_file, load_id)
        keys = dispensing_keys(rows)
        return keys if folder is None else self._read([folder], keys)

    def _read(self, folders: list[Path], keys: DataFrame) -> DataFrame:
        return self._read_files([f for folder in folders for f in _data_files(folder)], keys)

    def _read_files(self, files: list[str], keys: DataFrame) -> DataFrame:
        if not files:
            return keys.limit(0)
        return self.spark.read.schema(keys.schema).parquet(*files)

    def _compute(self, keys: DataFrame, entry: str) -> Path:
        folder = self.scratch / entry
        keys.write.mode("overwrite").parquet(str(folder))
        returns = self._read([folder], keys).where(F.col("_return"))
        returns.write.mode("overwrite").parquet(str(folder / RETURNS_DIR))
        (folder / RETURNS_DIR).mkdir(parents=True, exist_ok=True)  # none: an engine writes none
        self.computed[entry] = folder
        return folder

    def keep(self, loads: Mapping[str, str], *, load_id: str, shared: Path | None = None) -> None:
        """After load ``load_id`` committed: move the keys it computed and its ``shared`` id
        hashes (a folder in the scratch) into the store, and delete the folders of files and
        loads ``loads`` (``bronze/files`` now) no longer names, and older shared ids."""
        try:
            self.store.mkdir(parents=True, exist_ok=True)
            moves = dict(self.computed)
            if shared is not None and shared.is_dir():
                moves[f"{_SHARED}{load_id}"] = shared
            for entry, folder in moves.items():
                target = self.store / entry
                if target.exists():
                    shutil.rmtree(target)
                folder.rename(target)
            wanted = {_entry(f, load) for f, load in loads.items()} | {f"{_SHARED}{load_id}"}
            for folder in self.store.iterdir():
                if folder.name not in wanted:
                    shutil.rmtree(folder, ignore_errors=True)
            for old in self.store.parent.iterdir():
                if old.name != KEYS_FORMAT:
                    shutil.rmtree(old, ignore_errors=True)
        except OSError as error:  # a cache: the next load computes what is missing
            log.warning("could not keep the dispensing keys for the next load: %s", error)
        self.computed.clear()


def _data(path: Path) -> bool:
    """A data file of a folder (no engine's marker or checksum file)."""
    return not path.name.startswith((".", "_"))


def _data_files(folder: Path) -> list[str]:
    """The data files of a folder itself (not of its sub-folders), by name, so that no engine
    reads another's marker or checksum files."""
    return [str(path) for path in sorted(folder.glob("*.parquet")) if _data(path)]
