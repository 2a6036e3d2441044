"""Issue 15.4: the data a mount holds stays within ``--memory-budget`` however reads mix."""

from __future__ import annotations

import pytest

from fichierfs.reader import budget_shares

MiB = 1 << 20


@pytest.mark.parametrize("budget", [1 * MiB, 4 * 256 * 1024, 64 * MiB, 256 * MiB, 4096 * MiB])
def test_shares_never_exceed_the_budget(budget: int) -> None:
    cache, pages, queue = budget_shares(budget, 256 * 1024)
    assert cache + pages + queue <= max(budget, 256 * 1024 + 16 * 64 * 1024 + queue)
    assert cache >= 256 * 1024 and pages >= 16 * 64 * 1024 and queue >= 0


def test_default_budget_split() -> None:
    assert budget_shares(256 * MiB, 256 * 1024) == (192 * MiB, 32 * MiB, 32 * MiB)
    assert budget_shares(64 * MiB, 256 * 1024) == (48 * MiB, 8 * MiB, 8 * MiB)

