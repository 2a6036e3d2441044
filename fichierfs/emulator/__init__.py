"""A faithful local 1fichier.com (API v1, upload nodes, download tokens) for tests and benchmarks.

Written from docs/1fichier-api.md only (every behaviour cites its section). Never imported by the
fichierfs core.

    from fichierfs.emulator import Emulator, EmulatorConfig
    emu = Emulator(state_dir, EmulatorConfig(time_scale=0.01), clock=trio.current_time)
    async with httpx.AsyncClient(transport=emu.transport(), base_url="https://api.1fichier.com/v1") as c: ...

Modules, lowest first (imports run one way, tests/unit/test_emulator_layout.py): ``config`` (EmulatorConfig,
profiles, endpoint names), ``state`` (persisted account; upload sessions and tokens), ``rules`` (limits, locks,
bans, the one-location rule, names), ``faults``, ``service`` (EmulatorService: state + operations), ``wire``
(messages, replies, params), ``pipeline`` (what runs before a handler), ``handlers/`` (by API area), ``app``
(routes), ``core`` (Emulator: service + app + transport + out-of-band helpers), ``server`` (loopback CLI).
Every knob and control route: docs/emulator.md.
"""

from .config import API_ENDPOINTS, ENDPOINTS, NODE_ENDPOINTS, PROFILES, EmulatorConfig
from .core import Emulator

__all__ = ["API_ENDPOINTS", "ENDPOINTS", "NODE_ENDPOINTS", "PROFILES", "Emulator", "EmulatorConfig"]
