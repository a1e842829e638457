"""irlalign: align language models with inverse reinforcement learning."""

__version__ = "0.1.0"
