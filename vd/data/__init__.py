"""Data in: the hub dataset loaders (one schema out), the probe questions, and the synthetic value-gap
pairs. The package folder also holds the shipped probe set and synthetic prompts (JSONL)."""
