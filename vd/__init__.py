"""value-drifts: trace how post-training (SFT, PPO, DPO, SimPO) moves the stances a model takes.

Companion to "Value Drifts: Tracing Value Alignment During LLM Post-Training" (arXiv 2510.26707).
"""

__version__ = "0.1.0"
