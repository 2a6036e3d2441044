"""Injectable faults, counted per endpoint name (see ``config.ENDPOINTS``).

Kinds and what they reproduce:

* ``"5xx"`` — HTTP 503 with an HTML body (§3: clients allow for 503). The request is not processed.
* ``"html"`` — HTTP 200 ``text/html`` page where JSON was expected (§6 "end.pl returned HTML", #4382/#7971).
  The request is not processed.
* ``"no_links"`` — end.pl JSON without ``links`` (§6 "end.pl returned no links", rclone #5152). Only valid for
  ``end.pl``. The upload result is kept, so a later end.pl call returns the links.
* ``"truncate"`` — the request *is* processed, but the reply body is cut to half its Content-Length; the client
  sees a transport error while reading the body.
* ``"reset"`` — the connection is reset; the request is *not* processed ([UNVERIFIED choice]: reset before the
  server acted, so a client retry is always safe to model).
* ``"flood"`` — force a flood lock (``flood_lock_seconds``) and answer the §3 flood error.

``inject(endpoint, kind, nth, count)`` fails the ``nth`` next call of ``endpoint`` (counting from now, 1 = the
very next one) and the ``count - 1`` calls after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ENDPOINTS

__all__ = ["FAULT_KINDS", "FaultPlan"]

FAULT_KINDS = frozenset({"5xx", "html", "no_links", "truncate", "reset", "flood"})


@dataclass
class _Fault:
    kind: str
    skip: int  # calls to let through before firing
    remaining: int  # firings left


class FaultPlan:
    def __init__(self) -> None:
        self._faults: dict[str, list[_Fault]] = {}

    def inject(self, endpoint: str, kind: str, nth: int = 1, count: int = 1) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if kind == "no_links" and endpoint != "end.pl":
            raise ValueError('fault "no_links" only applies to "end.pl"')
        if nth < 1 or count < 1:
            raise ValueError("nth and count must be >= 1")
        self._faults.setdefault(endpoint, []).append(_Fault(kind, nth - 1, count))

    def take(self, endpoint: str) -> str | None:
        """Advance every fault of ``endpoint`` by one call; return the kind that fires on this call, if any."""
        faults = self._faults.get(endpoint)
        if not faults:
            return None
        fired: str | None = None
        for f in faults:
            if f.skip > 0:
                f.skip -= 1
            elif fired is None:
                fired = f.kind
                f.remaining -= 1
        self._faults[endpoint] = [f for f in faults if f.remaining > 0]
        return fired

    def clear(self) -> None:
        self._faults.clear()
