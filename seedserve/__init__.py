"""seedserve: a model-serving cluster on Ray Serve, with a manager on MongoDB."""

__version__ = "0.1.0"
__all__ = ["__version__"]
