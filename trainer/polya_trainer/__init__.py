"""PolyaRun trainer: the four stages of Pólya mid-training before RL. Import-light."""

__version__ = "0.1.0"
