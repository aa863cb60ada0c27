"""The one error type the command line turns into a one-line message and a non-zero exit."""


class LrcnError(Exception):
    """A problem the user can fix: bad input, a missing file, a wrong bundle."""
