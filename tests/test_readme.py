"""The README's network recipe runs as written (issue: "the README's network
recipes run as written on a skorch net trained by SGD and on a CNN")."""

import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("skorch")

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], flags=re.S)
    return match.group(1)


def test_network_recipe_runs():
    code = _block_after("### Networks")
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotAtOptimumWarning after SGD, by design
        exec(compile(code, "README.md#networks", "exec"), namespace)
    assert namespace["S"].shape == (10, 500)
    assert len(namespace["helpful"]) == 5
    assert namespace["S_cnn"].shape == (10, 500)
