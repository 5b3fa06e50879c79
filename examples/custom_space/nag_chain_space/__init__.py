"""Example nag plugin: the ``chain_cnn`` search space (see docs/plugins.md)."""
from nag_chain_space.space import ChainCNNSpace

__all__ = ["ChainCNNSpace"]
