"""streaming's dataset recipes (and the transformers/scikit-learn they import)
load only when used, in every process that imports tokenmill first."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import tokenmill
from streaming import MDSWriter, StreamingDataLoader, StreamingDataset
loaded = [name for name in ("sklearn", "transformers.models.auto") if name in sys.modules]
assert not loaded, loaded
import streaming
from streaming.text import StreamingC4  # a recipe still imports when asked for
from streaming.vision.cifar10 import StreamingCIFAR10
assert streaming.text.StreamingC4 is StreamingC4
print("ok")
"""


def test_streaming_recipes_wait_until_used():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
