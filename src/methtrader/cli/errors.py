"""The one exception the CLI turns into `error: <message>` and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a message that fits on one line, no traceback."""
