"""hoi: hand-object-interaction video toolkit (preprocess, generate, train, evaluate)."""

__version__ = "0.1.0"
