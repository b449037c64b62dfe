"""README.md and docs/: the README opens with the two commands CI and newcomers
run, and every relative link in the README and the topic pages leads to a file
(and a heading, for an #anchor) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FIRST_LINES = """# tokenmill

```
make demo   # set up, then run the whole pipeline and a short training run on the bundled sample corpus
make test   # set up, then run the tests
```
"""


def test_readme_opens_with_the_two_make_commands():
    assert (ROOT / "README.md").read_text().startswith(FIRST_LINES)
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
    assert {"demo", "test"} <= set(targets)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _links(text: str) -> list[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # not inside code blocks
    return [m for m in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"\w+://", m)]


def test_link_helpers():
    assert _slug("Fine-tuning an open model: `tokenmill finetune`") == "fine-tuning-an-open-model-tokenmill-finetune"
    assert _links("[a](docs/x.md#y) [b](https://e.org)\n```\n[c](z.md)\n```\n") == ["docs/x.md#y"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    broken = []
    for link in _links(page.read_text()):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(link)
        elif anchor and path.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", path.read_text(), flags=re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(link)
    assert broken == []
