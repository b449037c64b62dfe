"""Which Spark session a command gets, and what each kind is told about the machine."""

from __future__ import annotations

import pytest

from tokenmill import cli
from tokenmill import spark as session


def test_local_sessions_are_sized_for_this_machine():
    settings = session.session_settings("local[2]", cores=2)
    assert settings["spark.sql.shuffle.partitions"] == "4" and settings["spark.default.parallelism"] == "4"
    assert "spark.driver.memory" in settings


def test_the_jit_options_come_before_the_users(monkeypatch):
    monkeypatch.setenv("TOKENMILL_JAVA_OPTIONS", "-XX:Tier4InvocationThreshold=7 -Xss4m")
    options = session.session_settings("local[2]", cores=2)["spark.driver.extraJavaOptions"].split()
    assert options.index("-XX:Tier4InvocationThreshold=50000") < options.index("-XX:Tier4InvocationThreshold=7")
    assert options[-1] == "-Xss4m"  # the JVM takes the last value of a flag: the user's


def test_the_session_jvm_runs_with_the_jit_options(spark):
    runtime = spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = list(runtime.getInputArguments())
    assert set(session.JIT_OPTIONS) <= set(arguments)


def test_the_users_spark_properties_win():
    conf = session.parse_conf(["spark.sql.shuffle.partitions=7", " spark.executor.extraJavaOptions = -Xss4m -Da=b "])
    assert conf == {"spark.sql.shuffle.partitions": "7", "spark.executor.extraJavaOptions": "-Xss4m -Da=b"}
    settings = session.session_settings("local[2]", cores=2, conf=conf)
    assert settings["spark.sql.shuffle.partitions"] == "7" and settings["spark.default.parallelism"] == "4"
    assert settings["spark.executor.extraJavaOptions"] == "-Xss4m -Da=b"


@pytest.mark.parametrize("pair", ["spark.sql.shuffle.partitions", "executor.memory=2g", "=3", "spark.=1"])
def test_a_bad_conf_flag_is_one_line(capsys, tmp_path, pair):
    assert cli.main(["run", "--output", str(tmp_path / "o"), "--input", "x", "--conf", pair]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tokenmill run: error: --conf: expected spark.PROPERTY=VALUE, got {pair!r}"]
    assert not (tmp_path / "o").exists()  # rejected before anything is written


def test_a_cluster_keeps_its_own_parallelism():
    settings = session.session_settings("spark://127.0.0.1:7077", cores=2)
    assert "spark.default.parallelism" not in settings and "spark.sql.shuffle.partitions" not in settings
    assert "spark.driver.memory" in settings  # the driver still runs here


def test_a_running_connect_server_is_not_resized():
    settings = session.session_settings("sc://host:15002", cores=2)
    assert "spark.driver.memory" not in settings and "spark.default.parallelism" not in settings
    assert settings["spark.sql.session.timeZone"] == "UTC"


def test_the_classic_session_kind_and_parallelism(spark):
    assert not session.is_connect(spark)
    assert session.parallelism(spark) == spark.sparkContext.defaultParallelism
    # Where the setting cannot be read (Spark Connect), the session is asked by a query.
    assert session.measured_parallelism(spark) == spark.sparkContext.defaultParallelism


def test_the_query_probe_for_delta_finds_none_here(spark):
    # The probe Spark Connect sessions use (no JVM to ask); this classpath has no Delta.
    assert session._delta_source_exists(spark) is False
    assert session.has_delta(spark) is False


def test_master_and_remote_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--output", "x", "--master", "local[2]", "--remote", "local[2]"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not allowed with argument" in err[0]
