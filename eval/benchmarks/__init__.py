"""Router benchmarks on real outcome data (``switchyard eval benchmark``).

One long outcome format (:mod:`eval.benchmarks.outcomes`), converters from public routing data
sets into it, splits that do not leak, routers and baselines behind one interface, metrics with
bootstrap intervals, and the program that runs them all (:mod:`eval.benchmarks.run`).
See docs/router-quality.md and docs/benchmark-format.md.
"""
