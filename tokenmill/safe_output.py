"""Output folders a command writes whole: never delete anything tokenmill did not write.

A command that writes a folder (``export --out``, ``sample OUT_DIR``, the
shards) checks the target first with ``check_output_folder``, writes into a
new staging folder beside it (``staged_folder``) and swaps that in only when
it is complete (``replace_folder``). The target may be new, an empty folder,
or an earlier output of the same command, which the caller recognises (a
marker file it wrote, its exact file set). Anything else is refused as a
UserError before any work: a file, the working directory or a folder that
holds it, a folder the caller protects (a run, its base model) or one inside
or above it, and a non-empty folder of other files. Paths are compared
resolved, so ``.``, ``..`` and symlinks are caught.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional

from tokenmill.errors import UserError

STAGING = "staging"
OLD = "old"


def check_output_folder(
    target: str | Path,
    flag: str,
    what: str,
    is_earlier: Callable[[Path], bool] = lambda folder: False,
    overwrite: bool = True,
    overwrite_flag: Optional[str] = None,
    protected: Optional[Mapping[str, str | Path]] = None,
    allowed: Iterable[str | Path] = (),
) -> Path:
    """The resolved target, when writing it replaces nothing but an earlier output of ``what``.

    ``flag`` names the argument in messages (``--out``); ``is_earlier(folder)``
    says whether a non-empty folder is an earlier output, which is replaced
    only with ``overwrite`` (else the message names ``overwrite_flag``).
    ``protected`` maps a description ("the run folder") to a folder that the
    target may not be, be inside of or hold; ``allowed`` are folders inside
    a protected one that may still be written (a run's own export folder).
    """
    given = str(target)
    path = Path(target).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {given} is a file, not a folder: give a new folder for the {what}")
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        where = "the working directory" if path == cwd else f"a parent of the working directory ({cwd})"
        raise UserError(f"{flag} {given} is {where}, which writing the {what} would replace: "
                        f"give a new folder, e.g. {flag} {Path(given) / ('tokenmill-' + what.split()[0])}")
    exempt = {Path(p).expanduser().resolve() for p in allowed}
    for name, folder in (protected or {}).items():
        folder = Path(folder).expanduser().resolve()
        if path == folder:
            problem = f"is {name} ({folder})"
        elif path in folder.parents:
            problem = f"holds {name} ({folder})"
        elif folder in path.parents and path not in exempt:
            problem = f"is inside {name} ({folder})"
        else:
            continue
        raise UserError(f"{flag} {given} {problem}, and the {what} may not be written into or over it: "
                        f"give a new folder outside it")
    if path.is_dir() and any(path.iterdir()):
        if not is_earlier(path):
            raise UserError(f"{flag} {given} is not empty and is not an earlier {what} (tokenmill replaces only "
                            f"what it wrote): give a new or empty folder, or move its files away")
        if not overwrite:
            raise UserError(f"{flag} {given} holds an earlier {what}: add {overwrite_flag} to replace it, "
                            f"or give a new folder")
    return path


def sibling(target: Path, kind: str) -> Path:
    """A unique hidden name beside ``target``: ``.NAME.staging-1a2b3c4d`` or ``.NAME.old-...``."""
    return target.with_name(f".{target.name}.{kind}-{uuid.uuid4().hex[:8]}")


def new_or_empty(folder: Path) -> Path:
    """Create ``folder`` (and its parents); an existing one must be empty, nothing in it is replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; write into a new folder (see safe_output.staged_folder)")
    return folder


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A new folder beside ``target`` to write into; swapped in for ``target`` when the block ends.

    ``target`` must have passed ``check_output_folder``; a long write checks it
    again at the end of the block (the folder may have changed meanwhile). When
    the block raises, the staging folder is removed and ``target`` is left as it was.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = sibling(target, STAGING)
        staging.mkdir()  # mkdir, not mkdtemp: the folder gets the umask's mode, as any output folder
    except OSError as exc:
        raise UserError(f"cannot create a folder in {target.parent}: {exc.strerror or exc}") from None
    try:
        yield staging
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when it was moved in
        raise


def replace_folder(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an earlier ``target`` is moved aside first and removed last.

    The earlier folder is removed only once the new one is in place, so a
    process that dies between the two renames leaves it beside ``target``
    (as ``.NAME.old-*``), never lost. ``target`` must have passed
    ``check_output_folder``: this replaces whatever folder is there.
    """
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        target.rmdir()  # an empty folder: rename would not replace it on every platform
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    old = sibling(target, OLD)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
