"""Scoring: the paper's metrics (value profile, drift magnitude M, drift time η, value gap, bootstrap CIs)
and the scoring of a run's checkpoints."""
