"""Progress bars on stderr (tqdm), one per long stage; silent when disabled (``--quiet``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


class Bar:
    """A started bar: call it with a count to advance it; :meth:`set_total` once known."""

    def __init__(self, bar: tqdm | None) -> None:
        self._bar = bar

    def __call__(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.reset(total=total)


class Progress:
    """Factory of progress bars; ``enabled=False`` makes every bar a no-op."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    @contextmanager
    def bar(self, description: str, total: int, unit: str = "images") -> Iterator[Bar]:
        if not self.enabled:
            yield Bar(None)
            return
        bar = tqdm(
            total=total, desc=description, unit=f" {unit}", unit_scale=True, file=sys.stderr,
            dynamic_ncols=True, leave=True,
        )  # fmt: skip
        try:
            yield Bar(bar)
        finally:
            bar.close()
