"""Our own log lines: short, one per step, never a person-level value."""

from __future__ import annotations

import logging
import sys

_CONFIGURED = False


def get_logger(name: str = "rxcohort") -> logging.Logger:
    """Return a logger under the ``rxcohort`` hierarchy, configuring the root once."""
    global _CONFIGURED
    if not _CONFIGURED:
        from rxcohort.config import log_level

        level = log_level()
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s rxcohort %(levelname)s %(message)s", "%H:%M:%S")
        )
        root = logging.getLogger("rxcohort")
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = False
        # py4j and GX are chatty at INFO; their messages are not ours to show.
        logging.getLogger("py4j").setLevel(logging.WARNING)
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        # PySpark logs every failed query as a multi-kilobyte JSON record; the CLI reports the
        # error itself in one line.
        logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
        _CONFIGURED = True
    if name == "rxcohort" or name.startswith("rxcohort."):
        return logging.getLogger(name)
    return logging.getLogger(f"rxcohort.{name}")
