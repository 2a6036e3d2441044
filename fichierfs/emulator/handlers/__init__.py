"""The endpoint handlers, one module per API area (§2 user, folders, files; §5/§6 transfers; §2.17 remote;
the /_emulator control routes)."""
