"""The one place a Spark session is made, for the Spark engine and Spark-fitted CF.

pyspark is imported only when a session is asked for, so ``import crossrec`` never loads it.
Workers run Python UDFs with ``PYSPARK_PYTHON``: it is set to this interpreter (unless set
already), so workers see the same packages (numpy, pandas, faiss) as the driver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from crossrec.errors import ConfigError

__all__ = ["DEFAULT_MASTER", "DEFAULT_SPARK_CONF", "java_problem", "spark_session"]

DEFAULT_MASTER = "local[2]"
#: crossrec's defaults under the ``[spark]`` settings: a modest driver, few shuffle partitions
#: (the batch steps shuffle small tables), no UI, Arrow transfers for the pandas UDFs.
DEFAULT_SPARK_CONF: dict[str, str] = {
    "spark.driver.memory": "2g",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


def java_problem() -> str | None:
    """Why Spark cannot start here (no ``java`` on PATH or JAVA_HOME), or None."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return "no Java runtime found (Spark needs Java 17: install openjdk-17-jre-headless)"
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{java} -version failed: {exc}"
    return None


def spark_session(
    master: str = DEFAULT_MASTER,
    conf: Mapping[str, str] | None = None,
    *,
    app_name: str = "crossrec",
) -> Any:
    """A Spark session on ``master`` with :data:`DEFAULT_SPARK_CONF` updated by ``conf``.

    Spark keeps one session per process: when one is active already it is returned as it is
    (its master and settings win), so a caller that made its own session shares it.

    Raises
    ------
    ConfigError
        Java is missing or pyspark cannot start a session on ``master``.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    problem = java_problem()
    if problem is not None:
        raise ConfigError(f"cannot start Spark: {problem}", hint="or set [engine] kind = 'local'")
    settings = {**DEFAULT_SPARK_CONF, **dict(conf or {})}
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in sorted(settings.items()):
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j / JVM start-up failures have no common base class
        raise ConfigError(
            f"cannot start Spark on {master!r}: {str(exc).splitlines()[0] if str(exc) else exc}",
            hint="check [engine] master and the [spark] settings",
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    return session
