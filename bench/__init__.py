"""Benchmarks of the GSD reference codec: ``python -m bench.run`` writes BENCHMARKS.md.

``bench.scenes`` builds the inputs (profiles, keyframes, realistic deltas) and
is shared with tests/test_benchmarks.py so both time the same work.
"""
