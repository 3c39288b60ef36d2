"""The time left in the current scrape, set by the scraper for each collector it runs."""

from __future__ import annotations

import contextvars
import time

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("scrape_deadline", default=None)


def run_until(deadline: float, func, *args):
    """Run func in a copy of the current context where remaining() counts down to `deadline`."""
    context = contextvars.copy_context()
    context.run(_deadline.set, deadline)
    return context.run(func, *args)


def remaining(default: float) -> float:
    """Seconds left before the scrape's deadline, or `default` outside a scrape."""
    deadline = _deadline.get()
    return default if deadline is None else max(0.0, deadline - time.monotonic())
