"""The one exception type for bad input: a message that names the value and the fix."""


class ConfigError(ValueError):
    """Bad configuration or data, detected before any training work is done."""
