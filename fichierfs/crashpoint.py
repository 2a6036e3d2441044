"""Test hook: SIGKILL this process at a named step of an upload batch or a delete.

Steps: ``before_post``, ``after_post``, ``after_end``, ``before_delete_old``. The mount tier
sets ``FICHIERFS_TEST_CRASH_AT=<step>`` (tests/mount/test_write.py); the core tier replaces
:func:`hit` with a function that raises (tests/core/test_crash.py).
"""

from __future__ import annotations

import logging
import os
import signal

__all__ = ["CRASH_ENV", "hit"]

log = logging.getLogger(__name__)

CRASH_ENV = "FICHIERFS_TEST_CRASH_AT"


def hit(step: str) -> None:
    """Die here (SIGKILL, no clean-up) if the test hook names ``step``."""
    if os.environ.get(CRASH_ENV) == step:
        log.warning("test hook %s=%s: killing this process", CRASH_ENV, step)
        os.kill(os.getpid(), signal.SIGKILL)
