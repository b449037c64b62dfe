"""Offline check of our Databricks Asset Bundle (``databricks.yml`` + ``resources/``).

Databricks publishes a JSON schema for bundles under a licence that does not
let us ship it, so this module holds our own: a JSON schema covering the keys
this project uses (and rejecting unknown ones where a typo would silently do
nothing, e.g. ``depend_on``), validated with ``jsonschema``. ``databricks
bundle validate`` remains the authority when a workspace is reachable; this
check runs in CI without one. Only the tests use it, so it lives with them:

    python tests/bundle_schema.py [BUNDLE_ROOT]

Besides the schema, ``check_bundle`` checks what a schema cannot: every
``${var.x}`` is declared, every ``depends_on`` names a task of the same job,
the task graph has no cycle, and every ``job_cluster_key`` exists.
"""

from __future__ import annotations

import glob
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# A whole value that is one interpolation, e.g. "${var.cpu_workers}": allowed
# wherever a number, boolean or enum is expected (resolved at deploy time).
REFERENCE = re.compile(r"^\$\{[A-Za-z0-9_.\[\]-]+\}$")
ANY_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.\[\]-]+)\}")
# Quartz: seconds minutes hours day-of-month month day-of-week [year].
QUARTZ = r"^\S+( \S+){5,6}$"

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}

_VARIABLE = {
    "type": "object",
    "properties": {
        "description": _STR,
        "default": {"type": ["string", "number", "boolean"]},
        "type": {"enum": ["complex"]},
        "lookup": {"type": "object"},
    },
    "additionalProperties": False,
}

_NEW_CLUSTER = {
    "type": "object",
    "required": ["spark_version"],
    "properties": {
        "spark_version": _STR,
        "node_type_id": _STR,
        "driver_node_type_id": _STR,
        "num_workers": _INT,
        "autoscale": {
            "type": "object",
            "required": ["min_workers", "max_workers"],
            "properties": {"min_workers": _INT, "max_workers": _INT},
            "additionalProperties": False,
        },
        "data_security_mode": {"enum": ["SINGLE_USER", "USER_ISOLATION", "NONE"]},
        "spark_conf": _STR_MAP,
        "spark_env_vars": _STR_MAP,
        "custom_tags": _STR_MAP,
        "policy_id": _STR,
        "instance_pool_id": _STR,
        "runtime_engine": {"enum": ["STANDARD", "PHOTON"]},
    },
    "additionalProperties": False,
}

_LIBRARY = {
    "type": "object",
    "properties": {"whl": _STR, "pypi": {"type": "object"}, "jar": _STR, "requirements": _STR},
    "additionalProperties": False,
    "minProperties": 1,
}

_TASK = {
    "type": "object",
    "required": ["task_key"],
    "properties": {
        "task_key": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,100}$"},
        "description": _STR,
        "depends_on": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["task_key"],
                "properties": {"task_key": _STR, "outcome": _STR},
                "additionalProperties": False,
            },
        },
        "run_if": {"enum": ["ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE",
                            "AT_LEAST_ONE_FAILED", "ALL_FAILED"]},
        "job_cluster_key": _STR,
        "existing_cluster_id": _STR,
        "libraries": {"type": "array", "items": _LIBRARY},
        "python_wheel_task": {
            "type": "object",
            "required": ["package_name", "entry_point"],
            "properties": {
                "package_name": _STR,
                "entry_point": _STR,
                "parameters": {"type": "array", "items": _STR},
                "named_parameters": _STR_MAP,
            },
            "additionalProperties": False,
        },
        "notebook_task": {
            "type": "object",
            "required": ["notebook_path"],
            "properties": {"notebook_path": _STR, "base_parameters": _STR_MAP, "source": _STR},
            "additionalProperties": False,
        },
        "max_retries": _INT,
        "min_retry_interval_millis": _INT,
        "retry_on_timeout": _BOOL,
        "timeout_seconds": _INT,
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["python_wheel_task"]}, {"required": ["notebook_task"]}],
}

_JOB = {
    "type": "object",
    "required": ["name", "tasks"],
    "properties": {
        "name": _STR,
        "description": _STR,
        "max_concurrent_runs": _INT,
        "timeout_seconds": _INT,
        "tags": _STR_MAP,
        "schedule": {
            "type": "object",
            "required": ["quartz_cron_expression", "timezone_id"],
            "properties": {
                "quartz_cron_expression": {"type": "string", "pattern": QUARTZ},
                "timezone_id": {"type": "string", "pattern": r"^[A-Za-z_]+(/[A-Za-z_+-]+)*$"},
                "pause_status": {"enum": ["PAUSED", "UNPAUSED"]},
            },
            "additionalProperties": False,
        },
        "email_notifications": {
            "type": "object",
            "properties": {
                key: {"type": "array", "items": _STR}
                for key in ("on_start", "on_success", "on_failure", "on_duration_warning_threshold_exceeded")
            },
            "additionalProperties": False,
        },
        "job_clusters": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["job_cluster_key", "new_cluster"],
                "properties": {"job_cluster_key": _STR, "new_cluster": _NEW_CLUSTER},
                "additionalProperties": False,
            },
        },
        "tasks": {"type": "array", "items": _TASK, "minItems": 1},
        "parameters": {"type": "array", "items": {"type": "object"}},
        "permissions": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": False,
}

_RESOURCES = {
    "type": "object",
    "properties": {"jobs": {"type": "object", "additionalProperties": _JOB}},
    "additionalProperties": False,
}

_TARGET = {
    "type": "object",
    "properties": {
        "mode": {"enum": ["development", "production"]},
        "default": _BOOL,
        "workspace": {
            "type": "object",
            "properties": {"host": _STR, "profile": _STR, "root_path": _STR},
            "additionalProperties": False,
        },
        "variables": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "resources": _RESOURCES,
        "run_as": {
            "type": "object",
            "properties": {"user_name": _STR, "service_principal_name": _STR},
            "additionalProperties": False,
        },
        "presets": {"type": "object"},
    },
    "additionalProperties": False,
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["bundle"],
    "properties": {
        "bundle": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+$"}},
            "additionalProperties": False,
        },
        "include": {"type": "array", "items": _STR},
        "workspace": {"type": "object"},
        "artifacts": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["whl", "jar"]}, "path": _STR, "build": _STR},
                "additionalProperties": False,
            },
        },
        "variables": {"type": "object", "additionalProperties": _VARIABLE},
        "resources": _RESOURCES,
        "targets": {"type": "object", "additionalProperties": _TARGET, "minProperties": 1},
    },
    "additionalProperties": False,
}

def _unless_reference(check):
    """A keyword check that lets a whole ``${...}`` value stand for a scalar (resolved at deploy time)."""

    def run(validator, value, instance, schema):
        if isinstance(instance, str) and REFERENCE.match(instance) and schema.get("type") != "object":
            return
        yield from check(validator, value, instance, schema)

    return run


def _validator_class():
    from jsonschema import Draft202012Validator, validators

    keywords = {k: _unless_reference(Draft202012Validator.VALIDATORS[k]) for k in ("type", "enum", "pattern")}
    return validators.extend(Draft202012Validator, keywords)


def _path(error) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _messages(error) -> list[str]:
    """Our one-line wording for a jsonschema error: 'path: problem'."""
    here, value, schema = _path(error) or "(root)", error.instance, error.schema
    kind = error.validator
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {})))
        unknown = sorted(set(value) - set(schema.get("properties", {})))
        prefix = f"{here}." if _path(error) else ""
        return [f"{prefix}{key}: unknown key; allowed here: {allowed}" for key in unknown]
    if kind == "enum":
        return [f"{here}: must be one of {schema['enum']}, got {value!r}"]
    if kind == "type":
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return [f"{here}: must be {' or '.join(names)}, got {type(value).__name__} {value!r}"]
    if kind == "pattern":
        return [f"{here}: {value!r} does not match {schema['pattern']}"]
    if kind == "oneOf":
        keys = [option.get("required", ["?"])[0] for option in schema["oneOf"]]
        return [f"{here}: needs exactly one of {keys}"]
    if kind == "required":
        return [f"{here}: missing required key {key!r}" for key in schema["required"] if key not in value]
    if kind == "minItems":
        return [f"{here}: needs at least {schema['minItems']} item(s)"]
    if kind == "minProperties":
        return [f"{here}: needs at least {schema['minProperties']} key(s)"]
    return [f"{here}: {error.message}"]


def validate(value: Any, schema: dict) -> list[str]:
    """Errors of ``value`` against ``schema``, each as 'path: problem', in document order."""
    errors = sorted(_validator_class()(schema).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    return [message for error in errors for message in _messages(error)]


# --- the bundle as the CLI would see it ------------------------------------------


def merge(into: dict, other: dict) -> None:
    """Merge ``other`` into ``into`` as the CLI merges an included file: mappings key by key, any
    other value replaced by the later file's."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def load_bundle(root: str | Path = ".") -> dict:
    """databricks.yml with its ``include`` files merged in (resources are merged per job).

    An included file may hold ``resources``, ``variables`` and ``targets``; its targets are merged
    into databricks.yml's (a target named in both gets the keys of both), so the schema and the
    variable checks see them.
    """
    root = Path(root)
    main_file = root / "databricks.yml"
    if not main_file.is_file():
        raise FileNotFoundError(f"no databricks.yml in {root}")
    bundle = yaml.safe_load(main_file.read_text()) or {}
    for pattern in bundle.get("include", []):
        files = sorted(glob.glob(str(root / pattern)))
        if not files:
            raise FileNotFoundError(f"include pattern {pattern!r} matches no file under {root}")
        for path in files:
            part = yaml.safe_load(Path(path).read_text()) or {}
            unexpected = sorted(set(part) - {"resources", "variables", "targets"})
            if unexpected:
                raise ValueError(f"{path}: top-level key {unexpected[0]!r} belongs in databricks.yml")
            for kind, items in (part.get("resources") or {}).items():
                merged = bundle.setdefault("resources", {}).setdefault(kind, {})
                clash = sorted(set(merged) & set(items))
                if clash:
                    raise ValueError(f"{path}: resource {kind}.{clash[0]} is defined twice")
                merged.update(items)
            bundle.setdefault("variables", {}).update(part.get("variables") or {})
            targets = part.get("targets") or {}
            if not isinstance(targets, dict):
                raise ValueError(f"{path}: targets must be a mapping of target names, got {type(targets).__name__}")
            merge(bundle.setdefault("targets", {}), targets)
    return bundle


def resolved_variables(bundle: dict, target: str) -> dict[str, Any]:
    """Variable values for a target: defaults, then the target's overrides."""
    values = {name: spec.get("default") for name, spec in (bundle.get("variables") or {}).items()}
    values.update(((bundle.get("targets") or {}).get(target) or {}).get("variables") or {})
    return values


def references(value: Any) -> set[str]:
    """Every ``${...}`` name used anywhere inside ``value``."""
    if isinstance(value, str):
        return set(ANY_REFERENCE.findall(value))
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(references(v) for v in value), set())
    return set()


def task_order(job: dict) -> list[str]:
    """Task keys in an order that respects depends_on; raises on a cycle or unknown key."""
    tasks = {t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in job["tasks"]}
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(key: str, chain: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            raise ValueError(f"depends_on cycle: {' -> '.join(chain + [key])}")
        state[key] = "visiting"
        for dep in tasks[key]:
            if dep not in tasks:
                raise ValueError(f"task {key!r} depends on unknown task {dep!r}")
            visit(dep, chain + [key])
        state[key] = "done"
        order.append(key)

    for key in tasks:
        visit(key, [])
    return order


# Names the bundle may use without declaring them (filled in by the Databricks CLI).
BUILTIN_PREFIXES = ("bundle.", "workspace.", "resources.")


def check_bundle(root: str | Path = ".") -> list[str]:
    """All problems found in the bundle at ``root`` (empty when it is fine)."""
    try:
        bundle = load_bundle(root)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return [str(exc)]
    errors = validate(bundle, SCHEMA)
    declared = set(bundle.get("variables") or {})
    for name in sorted(references(bundle)):
        if name.startswith("var."):
            if name[4:] not in declared:
                errors.append(f"${{{name}}} is used but not declared under variables")
        elif not name.startswith(BUILTIN_PREFIXES):
            errors.append(f"${{{name}}}: unknown reference (use var., bundle., workspace. or resources.)")
    for target, spec in (bundle.get("targets") or {}).items():
        for name in (spec or {}).get("variables") or {}:
            if name not in declared:
                errors.append(f"targets.{target}.variables.{name}: not declared under variables")
    for job_name, job in ((bundle.get("resources") or {}).get("jobs") or {}).items():
        if not isinstance(job, dict) or not isinstance(job.get("tasks"), list):
            continue
        clusters = {c.get("job_cluster_key") for c in job.get("job_clusters", [])}
        keys = [t.get("task_key") for t in job["tasks"]]
        for key in sorted({k for k in keys if keys.count(k) > 1}):
            errors.append(f"jobs.{job_name}: task_key {key!r} is used twice")
        for task in job["tasks"]:
            cluster = task.get("job_cluster_key")
            if cluster is not None and cluster not in clusters:
                errors.append(f"jobs.{job_name}.{task.get('task_key')}: job_cluster_key {cluster!r} is not defined")
        try:
            task_order(job)
        except (ValueError, KeyError) as exc:
            errors.append(f"jobs.{job_name}: {exc}")
    return errors


def main(argv: list[str] | None = None) -> int:
    root = (argv if argv is not None else sys.argv[1:]) or ["."]
    errors = check_bundle(root[0])
    for error in errors:
        print(f"bundle: {error}", file=sys.stderr)
    if not errors:
        print(f"bundle at {root[0]}: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
