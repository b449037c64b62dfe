"""Where inputs and outputs live: one reading of a location string for every stage.

    /data/x, data/x       a plain path on this machine (relative to the working folder)
    file:///data/x        the same, as a URI
    /Volumes/c/s/v/x      a Unity Catalog volume: a plain path (FUSE) on Databricks
    dbfs:/Volumes/c/s/v/x the same volume as a DBFS URI
    dbfs:/x               DBFS; on a Databricks cluster also mounted at /dbfs/x
    s3://, s3a://, gs://, abfss://, ...   object stores: only Spark and streaming's
                          uploader can reach them, never a plain file open

``local_dir`` gives the folder a stage opens with plain file calls (manifest,
tokenizer.json, the shards' staging folder): always absolute, because Spark
executors on a cluster do not share the driver's working folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tokenmill.errors import UserError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):/")


def scheme(location: str) -> str | None:
    """``s3``, ``dbfs``, ``file``, ...; None for a plain path."""
    match = _SCHEME.match(str(location))
    return match.group(1).lower() if match else None


def is_remote(location: str) -> bool:
    """True when plain file calls cannot open it: object stores and ``dbfs:/`` URIs."""
    return scheme(location) not in (None, "file")


def strip_file_scheme(location: str) -> str:
    """``file:///x`` -> ``/x``; anything else unchanged."""
    location = str(location)
    if location.startswith("file://"):
        return location[len("file://"):] or "/"
    if location.startswith("file:/"):
        return location[len("file:"):]
    return location


def fuse_path(location: str) -> Path | None:
    """The plain path a Databricks machine mounts a ``dbfs:/`` URI at, else None."""
    if scheme(location) != "dbfs":
        return None
    rest = "/" + str(location)[len("dbfs:"):].lstrip("/")
    return Path(rest) if rest.startswith("/Volumes/") else Path("/dbfs" + rest)


def local_path(location: str) -> Path:
    """The absolute local path of a plain path or ``file://`` URI (UserError for a remote one)."""
    if is_remote(location):
        mounted = fuse_path(location)
        if mounted is not None and Path("/" + mounted.parts[1]).is_dir():  # /Volumes or /dbfs is mounted here
            return mounted
        raise UserError(f"{location} is not a folder this machine can open; use a local path, file:// or a "
                        "/Volumes/... path here")
    return Path(strip_file_scheme(location)).expanduser().absolute()


def local_dir(location: str) -> Path:
    """The folder for plain files of an output (manifest, tokenizer.json, shards staging)."""
    return local_path(location)


def join(location: str, *names: str) -> str:
    """``location/name/...`` keeping the location's scheme."""
    return "/".join([str(location).rstrip("/"), *names])


def make_writable_dir(path: Path, what: str) -> Path:
    """Create the folder if needed; one line naming ``what`` when it cannot be made or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{what} is not writable: {path}")
    return path
