"""feedwatch benchmarks: ingest, /metrics render, memory per symbol, WebSocket transport (``python -m bench``).

Each benchmark measures its ratios side by side in one run (same process, same data), uses
best-of-N ``time.perf_counter`` timings, and prints a table. Figures are recorded in
bench/README.md. Speed is never asserted in the test suite; ``tests/unit/test_collector_bench.py``
only runs each benchmark for a few iterations so the code cannot rot.
"""
