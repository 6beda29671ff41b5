"""A throwaway Spark standalone cluster on 127.0.0.1, started from the installed pyspark.

Used by the cluster tests: one master and N workers as child processes of the test, each with a
small share of the machine, stopped (with their process groups) when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _env(work: Path) -> dict[str, str]:
    # The suite's own engine may be Spark Connect; the cluster's processes are classic Spark.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "RXCOHORT_ENGINE")
    }
    env.update(
        {
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(work / "logs"),
            "SPARK_WORKER_DIR": str(work / "worker"),
            "PYSPARK_PYTHON": str(VENV_BIN / "python"),
            "PYSPARK_DRIVER_PYTHON": str(VENV_BIN / "python"),
            "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        }
    )
    return env


@contextmanager
def standalone_cluster(work: Path, *, workers: int = 2, cores: int = 1, memory: str = "1g"):
    """Yield the master URL of a running standalone cluster; stop it afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    env = _env(work)
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port = free_port()
    procs: list[subprocess.Popen] = []
    logs = []

    def start(args: list[str], name: str) -> None:
        log = (work / f"{name}.log").open("w")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [spark_class, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        start(
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(free_port())],
            "master",
        )  # fmt: skip
        _wait_for_port(port, 90)
        url = f"spark://127.0.0.1:{port}"
        for i in range(workers):
            start(
                ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", str(cores),
                 "--memory", memory, "--webui-port", str(free_port()), "--work-dir", str(work / f"w{i}")],
                f"worker{i}",
            )  # fmt: skip
        _wait_for_workers(work, workers, timeout=90)
        yield url
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def _wait_for_workers(work: Path, n: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (work / "master.log").read_text(errors="replace")
        if text.count("Registering worker") >= n:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{n} workers did not register with the master within {timeout:.0f} s")


def spark_submit(
    master: str,
    script: Path,
    args: list[str],
    *,
    work: Path,
    timeout: float = 900,
    conf: dict[str, str] | None = None,
) -> str:
    """Run ``script`` with spark-submit against ``master``; return its combined output.

    ``conf`` adds ``--conf`` settings or overrides the defaults below. The Delta JARs fetched
    at install time go to the driver and the executors with ``spark.jars``, as a user submits.
    """
    from rxcohort.jars import delta_spark_conf

    env = _env(work)
    env["RXCOHORT_ENV"] = "cluster"
    settings = {
        **delta_spark_conf(),
        "spark.executor.memory": "1g",
        "spark.driver.memory": "1g",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        "spark.pyspark.python": str(VENV_BIN / "python"),
        "spark.ui.enabled": "false",
        **(conf or {}),
    }
    cmd = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master", master,
        *[part for key, value in settings.items() for part in ("--conf", f"{key}={value}")],
        str(script),
        *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(
            f"spark-submit {script.name} failed ({proc.returncode}):\n{output[-4000:]}"
        )
    return output


CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


@contextmanager
def connect_server(
    work: Path,
    *,
    port: int,
    memory: str = "1g",
    timeout: float = 180,
    conf: dict[str, str] | None = None,
):
    """Yield ``sc://127.0.0.1:PORT`` of a classic Spark Connect server with delta-spark.

    The server is Spark's own (``SparkConnectServer`` from the installed pyspark's
    spark-connect JAR, started with spark-submit, as ``sbin/start-connect-server.sh`` of a Spark
    distribution does), in ``local[2]`` with the Delta JARs fetched at install time, bound to
    the loopback interface only. Its output goes to ``work/connect-server.log``. On exit its
    process group (the JVM and any Python worker it forked) is stopped, killed after 30 s.
    ``conf`` adds ``--conf`` settings or overrides the defaults below.
    """
    from rxcohort.jars import delta_spark_conf

    work.mkdir(parents=True, exist_ok=True)
    env = _env(work)
    env["TZ"] = "UTC"
    delta = delta_spark_conf()
    settings = {
        "spark.master": "local[2]",
        "spark.app.name": "rxcohort-connect-server",
        "spark.driver.memory": memory,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        # A taken port is an error here, not a silent bind to the next one.
        "spark.connect.grpc.port.maxRetries": "0",
        "spark.sql.extensions": delta["spark.sql.extensions"],
        "spark.sql.catalog.spark_catalog": delta["spark.sql.catalog.spark_catalog"],
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.warehouse.dir": str(work / "spark-warehouse"),
        "spark.local.dir": str(work / "tmp"),
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.pyspark.python": str(VENV_BIN / "python"),
        "spark.ui.enabled": "false",
        **(conf or {}),
    }
    cmd = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--class", CONNECT_SERVER_CLASS,
        "--jars", delta["spark.jars"],
        # No application JAR: spark-submit knows this class (spark-internal), and pyspark's
        # jars/ has spark-connect on the classpath already.
        *[part for key, value in settings.items() for part in ("--conf", f"{key}={value}")],
    ]  # fmt: skip
    log_path = work / "connect-server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=work,  # derby.log, a stray spark-warehouse: in the test's directory
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_server(proc, port, log_path, timeout=timeout)
        yield f"sc://127.0.0.1:{port}"
    finally:
        _stop_group(proc)


def _wait_for_server(proc: subprocess.Popen, port: int, log_path: Path, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"the Spark Connect server exited ({proc.returncode}) before listening:\n{tail}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-4000:]
    raise TimeoutError(
        f"the Spark Connect server was not listening on 127.0.0.1:{port} after "
        f"{timeout:.0f} s:\n{tail}"
    )


def _stop_group(proc: subprocess.Popen, *, grace: float = 30) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    # The JVM may leave children of its own (a Python worker) in the group after it exits.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
