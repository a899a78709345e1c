"""flowd: hot folders -> rules -> storage, durable and traced."""

__version__ = "0.1.0"
__all__ = ["__version__"]
