"""The documentation's code runs: every ``.. code-block:: python`` of every
page under ``doc/`` executes, the blocks of one page in order in one
namespace, as a reader would paste them.  Kept to seconds, so the guide
cannot rot between builds of the site (``make docs`` runs the gallery).
"""

from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "doc"
SKIP_DIRS = {"_build", "generated", "auto_examples", "_templates"}
GENERATED = {"api.rst", "sg_execution_times.rst"}  # written by the build

_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)\.\. code-block:: python[ \t]*\n"
    r"(?P<options>(?:(?P=indent)[ \t]+:[\w-]+:.*\n)*)"
    r"(?P<body>(?:[ \t]*\n|(?P=indent)[ \t]+.*\n)+)",
    flags=re.M,
)


def pages() -> list[Path]:
    return sorted(
        path
        for path in DOC.rglob("*.rst")
        if not SKIP_DIRS & set(path.relative_to(DOC).parts)
        and path.relative_to(DOC).as_posix() not in GENERATED
    )


def code_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, dedented source) of each python code block."""
    return [
        (text.count("\n", 0, match.start()) + 1, textwrap.dedent(match["body"]))
        for match in _BLOCK.finditer(text)
    ]


def test_extractor_finds_indented_blocks_and_stops_at_dedent():
    text = (
        "Title\n\n.. code-block:: python\n   :caption: c\n\n   a = 1\n\n"
        "   b = a + 1\nprose\n\n  .. code-block:: python\n\n     c = 3\n"
    )
    blocks = code_blocks(text)
    assert [src.strip() for _, src in blocks] == ["a = 1\n\nb = a + 1", "c = 3"]


def test_every_page_is_collected():
    names = {path.relative_to(DOC).as_posix() for path in pages()}
    assert "index.rst" in names
    assert any(name.startswith("user_guide/") for name in names)


@pytest.mark.parametrize(
    "page",
    [page for page in pages() if code_blocks(page.read_text())],
    ids=lambda path: path.relative_to(DOC).as_posix(),
)
def test_page_code_runs(page, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib").use("Agg")
    text = page.read_text()
    blocks = code_blocks(text)
    monkeypatch.chdir(tmp_path)  # anything a snippet writes stays here
    namespace: dict = {"__name__": "__doc_snippet__"}
    name = page.relative_to(DOC).as_posix()
    with warnings.catch_warnings():
        # guides show real fits (NotAtOptimumWarning after SGD is by design)
        warnings.simplefilter("ignore")
        for line, source in blocks:
            exec(compile(source, f"doc/{name}:{line}", "exec"), namespace)
    import matplotlib.pyplot as plt

    plt.close("all")
