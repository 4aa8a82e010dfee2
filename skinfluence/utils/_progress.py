"""Progress bars for long work (tqdm, silent unless ``verbose``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", verbose: int = 0
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar shown only when ``verbose > 0``."""
    return iter(
        tqdm(iterable, total=total, desc=desc, disable=not verbose, leave=False)
    )
