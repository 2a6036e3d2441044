"""A faithful local 1fichier.com (API v1, upload nodes, download tokens) for tests and benchmarks.

Written from docs/1fichier-api.md only (every behaviour cites its section). Never imported by the
fichierfs core.

    from fichierfs.emulator import Emulator, EmulatorConfig
    emu = Emulator(state_dir, EmulatorConfig(time_scale=0.01), clock=trio.current_time)
    async with httpx.AsyncClient(transport=emu.transport(), base_url="https://api.1fichier.com/v1") as c: ...

Modules: ``config`` (EmulatorConfig, endpoint names), ``state`` (persisted account), ``rules`` (limits, names),
``faults``, ``app`` (Starlette routes), ``core`` (Emulator), ``server`` (loopback CLI).
"""

from .config import API_ENDPOINTS, ENDPOINTS, NODE_ENDPOINTS, EmulatorConfig
from .core import Emulator

__all__ = ["API_ENDPOINTS", "ENDPOINTS", "NODE_ENDPOINTS", "Emulator", "EmulatorConfig"]
