"""``python -m fichierfs.emulator`` runs the loopback server (see ``server.py``)."""

from .server import main

raise SystemExit(main())
