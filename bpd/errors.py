"""The one exception type that reaches the user as a one-line message."""


class BpdError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""
