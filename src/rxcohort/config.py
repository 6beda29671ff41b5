"""Typed, layered configuration: ``conf/base`` overlaid by ``conf/<env>``, then the environment.

This is the one module that reads (or sets) environment variables. Everything else receives
plain values or calls one of the small functions at the end of this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

ENV_VAR = "RXCOHORT_ENV"
CONF_DIR_VAR = "RXCOHORT_CONF_DIR"
WAREHOUSE_VAR = "RXCOHORT_WAREHOUSE"
ENGINE_VAR = "RXCOHORT_ENGINE"
REMOTE_VAR = "SPARK_REMOTE"
JARS_VAR = "RXCOHORT_JARS_DIR"
LOG_LEVEL_VAR = "RXCOHORT_LOG_LEVEL"
DEFAULT_ENV = "local"
ENGINES = ("sail", "spark", "remote")

# Used when no conf/ directory can be found (a wheel installed on a cluster without the repo).
_BUILTIN_SPARK: dict[str, Any] = {
    "app_name": "rxcohort",
    "master": None,
    "log_level": "ERROR",
    "spark_conf": {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.legacy.sizeOfNull": "false",
    },
}


class SparkSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    app_name: str = "rxcohort"
    master: str | None = None
    log_level: str = "ERROR"
    quiet_console: bool = True
    spark_conf: dict[str, str] = Field(default_factory=dict)
    # Settings of the embedded engine (Sail's own keys, e.g. runtime.memory_pool.type); they
    # reach its server as SAIL_* environment variables when it starts.
    sail_conf: dict[str, str] = Field(default_factory=dict)


class DemoSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    persons: int = 20000
    seed: int = 2013
    # The demo enriches LDN users (the real share is 0.3%) so its tables have enough persons
    # to show something with counts under 5 masked.
    ldn_rate: float = 0.05
    defects: float = 0.001
    study: str = "ldn_opioids_2013"


class AppSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    warehouse: str = "./warehouse"
    # sail (embedded, no JVM), spark (classic PySpark + delta-spark) or remote (Spark Connect).
    engine: Literal["sail", "spark", "remote"] = "sail"
    remote: str | None = None
    demo: DemoSettings = Field(default_factory=DemoSettings)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into a copy of ``base``; nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def current_env() -> str:
    return os.environ.get(ENV_VAR, DEFAULT_ENV)


def conf_dir() -> Path | None:
    """Where the layered configuration lives: $RXCOHORT_CONF_DIR, the source checkout, the
    environment's share/rxcohort/conf (the offline kit), or ./conf."""
    explicit = os.environ.get(CONF_DIR_VAR)
    candidates = [Path(explicit)] if explicit else []
    candidates += [
        Path(__file__).resolve().parents[2] / "conf",
        # where the offline kit's install.sh puts it
        Path(sys.prefix) / "share" / "rxcohort" / "conf",
        Path.cwd() / "conf",
    ]
    for candidate in candidates:
        if (candidate / "base").is_dir():
            return candidate
    return None


def project_root() -> Path | None:
    """The source checkout holding conf/, cohorts/ and expectations/, when there is one."""
    directory = conf_dir()
    return directory.parent if directory else None


def _load_layer(directory: Path | None, env: str, name: str) -> dict[str, Any]:
    if directory is None:
        return {}
    merged: dict[str, Any] = {}
    for layer in ("base", env):
        path = directory / layer / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                from rxcohort.errors import ConfigError

                raise ConfigError(f"{path}: expected a mapping at the top level")
            merged = deep_merge(merged, data)
    return merged


def spark_settings(env: str | None = None) -> SparkSettings:
    env = env or current_env()
    directory = conf_dir()
    data = deep_merge(_BUILTIN_SPARK, _load_layer(directory, env, "spark.yaml"))
    data["spark_conf"] = {k: str(v) for k, v in (data.get("spark_conf") or {}).items()}
    data["sail_conf"] = {k: str(v) for k, v in (data.get("sail_conf") or {}).items()}
    return SparkSettings.model_validate(data)


def app_settings(env: str | None = None) -> AppSettings:
    env = env or current_env()
    data = _load_layer(conf_dir(), env, "rxcohort.yaml")
    if os.environ.get(WAREHOUSE_VAR):
        data["warehouse"] = os.environ[WAREHOUSE_VAR]
    return AppSettings.model_validate(data)


def engine_choice(
    engine: str | None = None, remote: str | None = None, *, env: str | None = None
) -> tuple[str, str | None]:
    """The engine and Spark Connect address to use: the option, else the environment
    (``RXCOHORT_ENGINE``, ``SPARK_REMOTE``), else conf (``engine:``, ``remote:``).

    A ``remote`` address alone (``--remote`` or ``SPARK_REMOTE``) means the remote engine.
    """
    settings = app_settings(env)
    remote = remote or os.environ.get(REMOTE_VAR) or settings.remote
    chosen = engine or os.environ.get(ENGINE_VAR)
    if not chosen and submitted_by_spark_submit():
        chosen = "spark"  # the JVM spark-submit started is the engine
    if not chosen:
        chosen = "remote" if (remote and not settings.remote) else settings.engine
    chosen = chosen.strip().lower()
    if chosen not in ENGINES:
        from rxcohort.errors import ConfigError

        raise ConfigError(
            f"engine must be one of {', '.join(ENGINES)}, not {chosen!r} "
            f"(--engine or ${ENGINE_VAR})"
        )
    return chosen, remote


def jars_dir_override() -> str | None:
    """``$RXCOHORT_JARS_DIR``: where the Delta JARs for the spark engine were put, if set."""
    return os.environ.get(JARS_VAR) or None


def submitted_by_spark_submit() -> bool:
    """True in a Python driver that ``spark-submit`` started: its JVM is already running and
    hands the driver the gateway's port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def log_level() -> str:
    """``$RXCOHORT_LOG_LEVEL`` (default INFO): the level of rxcohort's own log lines."""
    return os.environ.get(LOG_LEVEL_VAR, "INFO").upper()


def java_home() -> str | None:
    """``$JAVA_HOME``, when set: the Java runtime classic Spark would use."""
    return os.environ.get("JAVA_HOME") or None


def terminal_columns_given() -> bool:
    """True when ``$COLUMNS`` fixes the width of console output."""
    return "COLUMNS" in os.environ


def set_sail_environment(sail_conf: dict[str, str], checkpoint_uri: str) -> None:
    """Hand the embedded engine its settings: Sail reads its configuration from SAIL_<KEY>
    (dots as double underscores) when its server starts; a value already set wins. Its own
    per-session INFO lines are turned off (RUST_LOG) unless the user asked for them."""
    os.environ.setdefault("RUST_LOG", "error")
    os.environ["SAIL_EXECUTION__CHECKPOINT__PATH"] = checkpoint_uri
    for key, value in sail_conf.items():
        os.environ.setdefault("SAIL_" + key.upper().replace(".", "__"), value)


@contextmanager
def without_spark_connect_environment() -> Iterator[None]:
    """PySpark's builder turns into a Spark Connect client while SPARK_REMOTE is set, and its
    functions build Connect columns while SPARK_CONNECT_MODE_ENABLED is (a parent process that
    used Connect leaves it behind): neither belongs to a classic session. Both are cleared for
    the block; SPARK_REMOTE comes back after it."""
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    remote = os.environ.pop(REMOTE_VAR, None)
    try:
        yield
    finally:
        if remote is not None:
            os.environ[REMOTE_VAR] = remote
