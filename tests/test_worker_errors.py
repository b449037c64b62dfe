"""A user's error raised inside a Spark worker reaches the user as its one line."""

from __future__ import annotations

import json

import pytest

from tokenmill import cli
from tokenmill.errors import user_error_from_worker
from tokenmill.etl.clean import clean_and_redact
from tokenmill.config.etl import EtlConfig, FilterConfig

MISSING = "etl.filters.bad_words_file: cannot read /no/such/list.txt: No such file or directory"


def test_the_message_comes_back_from_a_workers_traceback(spark):
    cfg = EtlConfig(filters=FilterConfig(bad_words_file="/no/such/list.txt"))
    df = spark.createDataFrame([("a", "s", "Some words here.", {})], "id string, source string, text string, "
                                                                       "meta map<string,string>")
    with pytest.raises(Exception) as caught:
        clean_and_redact(df, cfg).collect()
    assert "Traceback" in str(caught.value)  # Spark's error carries the worker's whole traceback
    assert user_error_from_worker(caught.value) == MISSING


def test_only_user_errors_of_spark_workers_count():
    class PythonException(Exception):
        pass

    PythonException.__module__ = "pyspark.errors.exceptions.captured"
    text = "Traceback (most recent call last):\n  File ...\n{}\n"
    assert user_error_from_worker(PythonException(text.format("tokenmill.errors.ConfigError: a.b: bad"))) == "a.b: bad"
    assert user_error_from_worker(PythonException(text.format("ValueError: tokenmill.errors.UserError: x"))) is None
    assert user_error_from_worker(PythonException(text.format("tokenmill.etl.clean.Cleaner: not an error"))) is None
    assert user_error_from_worker(PythonException(text.format("tokenmill.nowhere.UserError: x"))) is None
    assert user_error_from_worker(ValueError(text.format("tokenmill.errors.UserError: x"))) is None


def test_a_stage_command_prints_the_workers_error_as_one_line(spark, tmp_path, capfd):
    (tmp_path / "one.jsonl").write_text(json.dumps({"id": "a", "text": "Some words to clean. " * 20}) + "\n")
    code = cli.main(["etl", "--input", str(tmp_path / "one.jsonl"), "--output", str(tmp_path / "out"),
                     "--set", "etl.filters.bad_words_file=/no/such/list.txt"])
    err = capfd.readouterr().err  # the JVM's logs too
    assert code == 2, err
    assert "Traceback" not in err and "Exception" not in err, err
    assert err.strip().splitlines()[-1] == f"tokenmill etl: error: {MISSING}"


def test_a_bad_words_file_that_is_not_utf8_is_a_users_error(tmp_path):
    from tokenmill.errors import UserError
    from tokenmill.etl.filters import load_bad_words

    path = tmp_path / "words.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="bad_words_file: cannot read .*: not UTF-8 text"):
        load_bad_words(str(path))
