"""Run pipeline stages in order, skipping the ones that are up to date.

A stage module exposes ``STAGE_SPEC``, a value with the ``Stage`` contract:
its name, the tables it reads and writes, ``run(ctx) -> StageRecord`` and
``summary(rec) -> list[str]`` for its summary screen. ``run`` reads the
previous stage's table through ``ctx.read``, writes its own through
``ctx.write`` and fills its record's ``inputs``/``outputs`` with
``ctx.signature(...)`` of what it read and wrote. The runner adds the config
hash and wall time, saves the record in ``OUT/manifest.json`` and prints the
summary. Each stage's command (``tokenmill etl`` ...) is the same generic
``add_arguments``/``main`` pair, from ``StageSpec``.

A stage is skipped when its record's config hash, input signatures and
output signatures all still match; ``--force`` reruns it.

A kind of data other than plain text is a *variant*: a run config section
(``chat:``) names it, and its module's ``STAGE_SPECS`` stand in for the
base stages of the same names (``stage_spec(name, cfg)``). The variant's
stages write their own typed facts; no base stage knows the variant exists.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from tokenmill import locations, tables
from tokenmill.config import RunConfig, config_hash, load_run_config, parse_overrides
from tokenmill.errors import UserError
from tokenmill.manifest import Manifest, StageRecord
from tokenmill.progress import log, print_summary

# Pipeline order: stage name -> module.
STAGES: dict[str, str] = {
    "etl": "tokenmill.etl.job",
    "dedup": "tokenmill.dedup.job",
    "tokenize": "tokenmill.tokenize.job",
    "shards": "tokenmill.shards.job",
}

# Variants: the run config section that asks for one -> the module whose
# ``STAGE_SPECS`` replace base stages (a stage it lacks runs as the base one).
VARIANTS: dict[str, str] = {
    "chat": "tokenmill.chat.stages",
}

REJECTS = "rejects"


@dataclass
class StageContext:
    spark: Any
    cfg: RunConfig
    out: str
    manifest: Manifest

    def location(self, name: str) -> str:
        return tables.stage_location(self.out, name, self.cfg.catalog_schema)

    def exists(self, name: str) -> bool:
        return tables.exists(self.spark, self.location(name))

    def read(self, name: str):
        return tables.read(self.spark, self.location(name))

    def version(self, name: str) -> int | None:
        return tables.version(self.spark, self.location(name))

    def write(self, df, name: str) -> int:
        return tables.write(df, self.location(name))

    def write_rejects(self, df, stage: str) -> int:
        """Replace this stage's rows of ``rejects`` (id, source, stage, reason, sample)."""
        columns = ["id", "source", "stage", "reason", "sample"]
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"rejects rows lack columns {missing}")
        return tables.write(df.select(*columns), self.location(REJECTS), replace_where=("stage", stage))

    def signature(self, target: str) -> str:
        """What a stage read or wrote, for the up-to-date check.

        A table name or location -> its Delta version; a file or folder -> a
        hash of relative paths, sizes and modification times.
        """
        path = locations.strip_file_scheme(target)  # file:///x and /x are the same file
        if Path(path).is_file():
            return files_signature(path)
        location = self.location(target) if "/" not in target and not tables.is_catalog_name(target) else target
        if tables.exists(self.spark, location):
            return f"delta:v{tables.version(self.spark, location)}"
        return files_signature(path)


class Stage(Protocol):
    """What the runner needs from a stage."""

    name: str
    inputs: tuple[str, ...]  # tables read (etl reads the raw --input paths instead)
    outputs: tuple[str, ...]  # tables written

    def run(self, ctx: StageContext) -> StageRecord: ...

    def summary(self, rec: StageRecord) -> list[str]: ...

    def config_of(self, cfg: RunConfig) -> Any: ...


@dataclass(frozen=True)
class StageSpec:
    """A stage's contract as plain values, and its command's generic ``add_arguments``/``main``."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    run: Callable[[StageContext], StageRecord]
    summary: Callable[[StageRecord], list[str]] = lambda rec: []
    # What of the run config the stage reads (its hash says when to rerun it);
    # None: the stage's own section (``cfg.dedup`` for dedup).
    settings: Callable[[RunConfig], Any] | None = None
    raw_inputs: bool = False  # reads --input paths (etl)

    def config_of(self, cfg: RunConfig) -> Any:
        return self.settings(cfg) if self.settings is not None else getattr(cfg, self.name)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_stage_arguments(parser, inputs=self.raw_inputs)

    def main(self, args: argparse.Namespace) -> int:
        return run_command(args, [self.name])


def variant(cfg: RunConfig) -> str | None:
    """The variant ``cfg`` asks for (the one section of ``VARIANTS`` it sets), None for plain text."""
    asked = [name for name in VARIANTS if getattr(cfg, name) is not None]
    if len(asked) > 1:
        raise UserError(f"the run config sets {' and '.join(asked)}: a run is one kind of data, keep one section")
    return asked[0] if asked else None


def stage_spec(name: str, cfg: RunConfig) -> Stage:
    """The stage called ``name`` for the data ``cfg`` asks for: the variant's own stage when it
    has one, else the base stage (its module's ``STAGE_SPEC``)."""
    chosen = variant(cfg)
    if chosen is not None:
        own = importlib.import_module(VARIANTS[chosen]).STAGE_SPECS
        if name in own:
            return own[name]
    return importlib.import_module(STAGES[name]).STAGE_SPEC


def files_signature(path: str) -> str:
    p = Path(path)
    if not p.exists():
        return "missing"
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if f != p else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"files:{h.hexdigest()[:16]}"


def stage_config_hash(cfg: RunConfig, stage: str) -> str:
    """The hash of what the stage (the variant ``cfg`` asks for) reads of the config."""
    return config_hash(stage_spec(stage, cfg).config_of(cfg))


def is_up_to_date(ctx: StageContext, stage: str) -> bool:
    rec = ctx.manifest.stages.get(stage)
    if rec is None or rec.config_hash != stage_config_hash(ctx.cfg, stage):
        return False
    # rejects is shared: every stage replaces only its own rows, which bumps the
    # version for the others, so its version says nothing about one stage.
    recorded = {t: sig for t, sig in {**rec.inputs, **rec.outputs}.items() if t != REJECTS}
    return bool(rec.outputs) and all(ctx.signature(t) == sig for t, sig in recorded.items())


def run_stages(spark, cfg: RunConfig, stages: list[str], force: bool = False) -> Manifest:
    out = make_output_dir(cfg)
    manifest = Manifest.load(locations.local_dir(out))
    manifest.meta.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    ctx = StageContext(spark=spark, cfg=cfg, out=out, manifest=manifest)
    for name in stages:
        if not force and is_up_to_date(ctx, name):
            log(f"[{name}] up to date, skipped (use --force to rerun)")
            continue
        spec = stage_spec(name, cfg)
        started = time.time()
        rec: StageRecord = spec.run(ctx)
        rec.config_hash = stage_config_hash(cfg, name)
        rec.wall_s = round(time.time() - started, 3)
        vacuum_outputs(ctx, rec, spec.outputs)
        manifest.record(rec)
        print_summary(rec, spec.summary(rec))
    return manifest


def vacuum_outputs(ctx: StageContext, rec: StageRecord, names: tuple[str, ...]) -> None:
    """Delete earlier versions' files of the tables a stage wrote (older than the retention).

    VACUUM commits to the table's log (a new version, same rows), so a recorded
    output signature is refreshed, or the next run would think the output changed.
    A table that cannot be vacuumed (a workspace that forbids it) is reported,
    not fatal: the stage's output is already committed.
    """
    hours = ctx.cfg.vacuum_retention_hours
    if hours is None:
        return
    for name in names:
        if not ctx.exists(name):
            continue
        before = ctx.signature(name)
        try:
            tables.vacuum(ctx.spark, ctx.location(name), hours)
        except Exception as exc:  # Delta and Spark raise many kinds; none should undo a finished stage
            log(f"[{rec.stage}] vacuum of {name} skipped: {str(exc).splitlines()[0][:200]}")
        if rec.outputs.get(name) == before:
            rec.outputs[name] = ctx.signature(name)


def check_output(cfg: RunConfig) -> str:
    """The output location, checked without creating anything."""
    if not cfg.output:
        raise UserError("no output given: pass --output OUT (or set output: in the config)")
    locations.local_dir(cfg.output)  # a location plain file calls can open
    return cfg.output


def make_output_dir(cfg: RunConfig) -> str:
    """The output folder, created (manifest.json and tokenizer.json are plain files)."""
    out = check_output(cfg)
    locations.make_writable_dir(locations.local_dir(out), "output folder")
    return out


def check_inputs(cfg: RunConfig) -> None:
    """Every raw input that is a path on this machine exists (catalog tables and
    object stores are left to ingest, which reads them with Spark)."""
    if not cfg.inputs:
        raise UserError("no input given: pass --input PATH (or set inputs: in the config)")
    for spec in cfg.inputs:
        mounted = locations.fuse_path(spec.path)
        path = str(mounted) if mounted is not None else locations.strip_file_scheme(spec.path)
        exists = not locations.is_remote(path) and Path(path).exists()
        if spec.format == "table" or (spec.format == "auto" and not exists and tables.is_catalog_name(path)):
            continue
        if locations.is_remote(path):
            if spec.format == "delta":
                continue
            raise UserError(f"input {spec.path}: files are listed and read on this machine, so give a local, "
                            "file:// or /Volumes/... path (an object-store Delta table works with format: delta)")
        if not exists:
            raise UserError(f"input not found: {spec.path} (check the path, or give a catalog table as "
                            "catalog.schema.table)")


def check_stage_order(cfg: RunConfig, stages: list[str], flag: bool) -> None:
    """Each selected stage reads a table that an earlier selected stage writes, or
    that is already in the output (tables in a catalog are left to Spark to find).

    ``flag``: the stages came from ``--stages`` (the message says to add one there).
    """
    if cfg.catalog_schema:
        return
    writers = {table: name for name in STAGES for table in stage_spec(name, cfg).outputs}
    for name in stages:
        spec = stage_spec(name, cfg)
        earlier = stages[: stages.index(name)]
        if not spec.inputs or any(writers[t] in earlier or _table_exists(cfg, t) for t in spec.inputs):
            continue
        producers = list(dict.fromkeys(writers[t] for t in spec.inputs))
        first = min(producers, key=list(STAGES).index)
        reads = " or ".join(f"the {t} table" for t in spec.inputs)
        if len(producers) == 1:
            who = f"which {first} writes, and {cfg.output} has none yet"
        else:
            who = f"which {' or '.join(producers)} write, and {cfg.output} has neither yet"
        where = "--stages: " if flag else ""
        hint = " (add it to --stages)" if flag else ""
        raise UserError(f"{where}{name} reads {reads}, {who}: run {first} first{hint}")


def _table_exists(cfg: RunConfig, name: str) -> bool:
    return locations.local_path(tables.stage_location(cfg.output, name)).exists()


# --- command line -----------------------------------------------------------------


def add_stage_arguments(parser: argparse.ArgumentParser, inputs: bool = False) -> None:
    """Flags shared by ``run`` and the single-stage commands."""
    if inputs:
        parser.add_argument("--input", action="append", metavar="PATH", default=None,
                            help="raw input: file, folder, Delta table path or catalog table (repeatable)")
    parser.add_argument("--output", metavar="OUT", help="output folder (tables/, shards/, manifest.json)")
    parser.add_argument("--config", metavar="FILE", help="run config YAML (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one config field, e.g. --set etl.filters.min_words=20 (repeatable)")
    parser.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--master", metavar="URL",
                       help="classic Spark on this master, e.g. spark://host:7077 (default: MASTER, else local)")
    where.add_argument("--remote", metavar="URL",
                       help="Spark Connect: sc://host:15002, or local[N] to start a server here "
                            "(default: SPARK_REMOTE); an already active session is used as it is")
    parser.add_argument("--conf", action="append", default=[], metavar="spark.KEY=VALUE",
                        help="a Spark property for the session started here, as spark-submit takes it, "
                             "e.g. --conf spark.executor.memory=4g (repeatable; wins over tokenmill's own)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides = parse_overrides(args.set)
    if getattr(args, "input", None):
        overrides["inputs"] = [{"path": p} for p in args.input]
    if args.output:
        overrides["output"] = args.output
    return load_run_config(args.config, overrides)


def run_command(args: argparse.Namespace, stages: list[str], from_flag: bool = False) -> int:
    """Check everything that needs no data, then create the output and start Spark.

    A failed check creates nothing: no output folder, no Spark session.
    """
    from tokenmill.spark import get_spark, parse_conf

    cfg = config_from_args(args)
    conf = parse_conf(getattr(args, "conf", []))
    check_output(cfg)
    if "etl" in stages:
        check_inputs(cfg)
    check_stage_order(cfg, stages, from_flag)
    make_output_dir(cfg)
    spark = get_spark(master=getattr(args, "master", None), remote=getattr(args, "remote", None), conf=conf)
    run_stages(spark, cfg, stages, force=args.force)
    return 0


def config_from_widgets(dbutils, inputs: bool = False) -> RunConfig:
    """The run config from a notebook's standard widgets (output, catalog_schema,
    config, overrides as ``field=value; field=value``, and inputs for 01_etl)."""
    widgets = dbutils.widgets
    overrides = parse_overrides(widgets.get("overrides").split(";"))
    overrides["output"] = widgets.get("output")
    overrides["catalog_schema"] = widgets.get("catalog_schema") or None
    paths = [p.strip() for p in widgets.get("inputs").split(",") if p.strip()] if inputs else []
    if paths:
        overrides["inputs"] = [{"path": p} for p in paths]
    return load_run_config(widgets.get("config") or None, overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, inputs=True)
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated stages to run, in pipeline order (default: {','.join(STAGES)})")


def main(args: argparse.Namespace) -> int:
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise UserError(f"--stages: unknown stage {unknown[0] if unknown else '(none)'}; allowed: {', '.join(STAGES)}")
    ordered = [s for s in STAGES if s in stages]
    return run_command(args, ordered, from_flag=True)
