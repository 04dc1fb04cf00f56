"""A small synthetic wide CSV for the benchmark tests: which model answers well depends on the topic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

TOPICS = {
    "poetry": "write a short poem about the {} in spring with rhyme",
    "algebra": "solve the equation for x where {} equals twice x plus three",
    "history": "which empire ruled the {} region during the medieval period",
    "cooking": "give me a recipe that uses {} and fresh garlic for dinner",
}
NOUNS = ("river", "mountain", "city", "forest", "harbour", "desert", "valley", "island", "garden", "market")
# P(correct) per model and topic: cheap is good at poetry and cooking, mid at algebra, dear at all
SKILL = {
    "cheap": {"poetry": 0.9, "algebra": 0.1, "history": 0.3, "cooking": 0.85},
    "mid": {"poetry": 0.4, "algebra": 0.9, "history": 0.5, "cooking": 0.5},
    "dear": {"poetry": 0.9, "algebra": 0.9, "history": 0.9, "cooking": 0.9},
}
COST = {"cheap": 0.001, "mid": 0.004, "dear": 0.02}


def synthetic_wide_csv(path: Path, per_topic: int = 80, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for topic, template in TOPICS.items():
        for i in range(per_topic):
            noun = NOUNS[i % len(NOUNS)]
            row = {"prompt": f"{template.format(noun)} (case {i})", "task": topic}
            for model, skill in SKILL.items():
                row[model] = float(rng.uniform() < skill[topic])
                row[f"{model}|total_cost"] = COST[model]
            rows.append(row)
    pl.DataFrame(rows).write_csv(path)
    return path
