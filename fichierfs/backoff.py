"""One back-off formula for every retried item of the write side (uploads, namespace ops, mkdir)."""

from __future__ import annotations

__all__ = ["backoff"]


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after ``attempts`` failures: ``base`` doubling, at most ``cap``.

    >>> [backoff(n, 5.0, 300.0) for n in (1, 2, 3, 10)]
    [5.0, 10.0, 20.0, 300.0]
    """
    if attempts <= 0:
        return 0.0
    return float(min(cap, base * 2.0 ** min(attempts - 1, 60)))
