"""Errors that the CLI turns into one clear line and exit status 2."""


class CollectorError(Exception):
    """A problem the operator can act on; its message is shown as is, without a traceback."""

    exit_code = 2
