"""The ``tokenmill`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module, which exposes
``add_arguments(parser)`` and ``main(args) -> int``. Modules are imported
only when their command runs, so ``tokenmill plan`` does not pay for Spark
or torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tokenmill import interrupts
from tokenmill.errors import UserError, user_error_from_worker

# command -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample": ("tokenmill.sample.corpus", "write the bundled sample corpus (prose and code, planted PII/duplicates/junk)"),
    "run": ("tokenmill.pipeline", "run the whole pipeline; skips stages whose output is up to date"),
    "etl": ("tokenmill.etl.job", "ingest, clean, filter and strip PII into tables/clean"),
    "dedup": ("tokenmill.dedup.job", "remove exact and near (MinHash LSH) duplicates into tables/deduped"),
    "tokenize": ("tokenmill.tokenize.job", "pre-tokenize and pack documents into fixed-length sequences"),
    "shards": ("tokenmill.shards.job", "globally shuffle sequences and write MDS shards (train/val)"),
    "finetune": ("tokenmill.finetune", "fine-tune an open model on chat, instruction or text data, data to export"),
    "train": ("tokenmill.train.launch", "train a GPT decoder with FSDP on MDS shards"),
    "export": ("tokenmill.train.export", "write consolidated safetensors weights from a checkpoint"),
    "register": ("tokenmill.train.registry", "log a run and its Hugging Face export to MLflow; register a model version"),
    "generate": ("tokenmill.train.generate", "sample text from a checkpoint"),
    "plan": ("tokenmill.plan", "compute budget: tokens, FLOPs, GPU-days, cost, failures, checkpoint interval"),
    "preflight": ("tokenmill.preflight", "checklist before a costly training run"),
    "report": ("tokenmill.report.card", "write an HTML data card for a pipeline output"),
    "jvm-archive": ("tokenmill.jvm_archive", "archive Spark's classes once: local Spark sessions start ~4 s faster"),
}


class _OneLineErrors(argparse.ArgumentParser):
    """A bad flag prints one line naming it, then exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="tokenmill",
        description="Turn raw text corpora into training-ready MDS shards with Spark, then train on them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or name == command:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    interrupts.install()
    try:
        return int(module.main(args) or 0)
    except UserError as exc:
        print(f"tokenmill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:
        if interrupts.interrupted() or isinstance(exc, KeyboardInterrupt):
            # Whatever the interrupted call raised (py4j breaks mid-call): the user asked to stop.
            interrupts.stop_spark_quietly()
            print(f"tokenmill {args.command}: interrupted; rerun to continue", file=sys.stderr)
            return 130
        message = user_error_from_worker(exc)
        if message is None:
            raise
        print(f"tokenmill {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
