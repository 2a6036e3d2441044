"""Shared test harness: processes started by PID and stopped by PID, the loopback emulator, fichierfs
mounts, the rclone fidelity rig, RSS sampling.

Used by the mount and fidelity tiers (their conftest files re-export it) and by scripts/bench. It may
import fichierfs (to read its options) but the fichierfs core never imports it
(tests/unit/test_layering.py).
"""
