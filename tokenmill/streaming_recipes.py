"""Keep ``import streaming`` cheap: its dataset recipes load only when used.

``streaming/__init__.py`` imports its recipe packages (``streaming.text``,
``.vision``, ``.multimodal``: C4, ImageNet, WebVid...), and they import
transformers and scikit-learn. That is about 10 s of CPU in every process
that touches MDS (each training rank, each Spark Python worker of the
shards stage), for code tokenmill never calls.

``defer()`` puts a stand-in for each of the three packages in
``sys.modules`` before streaming is first imported. A stand-in has the
package's name, path and spec, so probing it costs nothing; the first
lookup of anything else (``streaming.text.StreamingC4``) imports the real
package and answers from it. Importing a submodule (``streaming.text.c4``)
works as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

RECIPES = ("text", "vision", "multimodal")


class _Deferred(types.ModuleType):
    """A recipe package not imported yet; any public name imports it."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_load(self.__name__), name)


def defer() -> None:
    """Defer streaming's recipe packages; no effect once streaming is imported."""
    if "streaming" in sys.modules:
        return
    spec = importlib.util.find_spec("streaming")  # finds it without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return
    root = Path(list(spec.submodule_search_locations)[0])
    for name in RECIPES:
        folder = root / name
        qualified = f"streaming.{name}"
        if qualified not in sys.modules and (folder / "__init__.py").is_file():
            sys.modules[qualified] = _stand_in(qualified, folder)


def _stand_in(qualified: str, folder: Path) -> _Deferred:
    module = _Deferred(qualified)
    module.__file__ = str(folder / "__init__.py")
    module.__path__ = [str(folder)]
    module.__package__ = qualified
    module.__spec__ = importlib.util.spec_from_file_location(
        qualified, folder / "__init__.py", submodule_search_locations=[str(folder)])
    return module


def _load(qualified: str) -> types.ModuleType:
    """Import the real package in place of its stand-in."""
    stand_in = sys.modules.pop(qualified)
    try:
        real = importlib.import_module(qualified)
    except BaseException:
        sys.modules[qualified] = stand_in
        raise
    parent, _, child = qualified.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, real)
    return real
