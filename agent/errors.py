"""Errors that the CLI turns into one clear line and exit status 2."""


class AgentError(Exception):
    """A problem the person at the keyboard can act on; its message is shown as is, without a traceback."""

    exit_code = 2
