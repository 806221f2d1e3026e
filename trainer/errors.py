"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad input, missing service, missing model); str() says how."""
