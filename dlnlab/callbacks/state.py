"""Callback state as plain Python, so checkpoints load with torch.load(weights_only=True)."""

import numpy as np


def plain(value):
    """numpy arrays and scalars inside dicts, lists and tuples turned into lists, ints and floats."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value
