"""Errors a user can fix. The CLI prints them as one line and exits 2."""

from __future__ import annotations

import importlib
import re


class UserError(Exception):
    """Bad input, path, flag or config: the message says how to fix it."""


class ConfigError(UserError):
    """A config field has a value that is not allowed.

    The message starts with the dotted field name, e.g.
    ``etl.clean.min_words: must be an integer >= 0, got 'ten'``.
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)



# Spark sends an exception raised in a Python worker to the driver as text: the
# worker's traceback inside a PythonException (or inside a Java job failure),
# whose last line names the exception's class and holds its message.
_WORKER_EXCEPTION = re.compile(r"^(tokenmill(?:\.\w+)+): (.+)$", re.MULTILINE)


def user_error_from_worker(exc: BaseException) -> str | None:
    """The message of a UserError that a Spark worker raised, from the error Spark raised for it.

    None for anything else: only Spark's and py4j's exceptions carry a worker's
    traceback, and only a class that is a UserError counts.
    """
    if type(exc).__module__.split(".")[0] not in ("pyspark", "py4j"):
        return None
    for class_path, message in reversed(_WORKER_EXCEPTION.findall(str(exc))):
        if _is_user_error(class_path):
            return message.strip()
    return None


def _is_user_error(class_path: str) -> bool:
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name, None)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, UserError)
