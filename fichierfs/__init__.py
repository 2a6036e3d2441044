"""fichierfs: mount a 1fichier.com account as a local filesystem (FUSE).

Layers, each importing only those below it::

    cli -> mount -> ops -> vfs -> meta / reader / writer -> scheduler -> api -> httpx

``fichierfs.emulator`` (a faithful local 1fichier) sits beside the core and is never
imported by it (``tests/unit/test_layering.py`` checks this).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
