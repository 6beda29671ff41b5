"""The crash test's child: run a spark-submit job script and SIGKILL this process right after
its N-th Delta commit (each commit logs ``committed <table> version <n>``).

    python tests/crash_child.py N jobs/ingest.py DELIVERY --warehouse WH
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import sys


class _KillAfter(logging.Handler):
    def __init__(self, after: int) -> None:
        super().__init__(logging.INFO)
        self.after = after
        self.commits = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("committed "):
            self.commits += 1
            if self.commits == self.after:
                os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    after, script, *args = sys.argv[1:]
    logging.getLogger("rxcohort").addHandler(_KillAfter(int(after)))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
