"""The capacity model: the brief's scale, the measured stage costs and stated assumptions → a sizing.

``inputs`` holds the typed inputs (the scale table, the assumptions with their sources),
``stage_file`` reads ``bench/results/stage_costs.json`` into them, ``model`` is the pure sizing
arithmetic and ``tables`` renders its result as the markdown tables of ``docs/design-review.md``.
"""
