"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""


class QfitError(Exception):
    """A problem with the user's input or environment that deserves a one-line message, not a traceback."""

    exit_code = 2
