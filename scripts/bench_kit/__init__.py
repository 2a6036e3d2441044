"""scripts/bench in parts: ``common`` (sizes, results, the workload interface), ``runner`` (the measuring loop:
emulator, mounts, timed steps, counters), ``workloads/`` (one file per workload, discovered by name) and
``report`` (BENCHMARKS.md, the chart). The processes it starts come from tests/harness (shared with the mount
and fidelity tiers)."""
