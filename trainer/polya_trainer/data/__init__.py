"""Questions, heuristics, prompts, benchmarks and statistics of data."""
