"""The simulator's failure: a broken safety or liveness property."""


class Violation(AssertionError):
    """A safety property broke (or the liveness bound passed); the message says which."""
