"""The benchmark suite: a load generator, three baseline servers, and a runner (``make bench``).

See ``benchmarks/run.py`` for what is measured and ``benchmarks/results/report.md`` for the last run.
"""
