"""The one exception type for mistakes a user can fix (bad flags, files, data)."""


class UserError(Exception):
    """Shown by the CLI as a single ``error: ...`` line with exit code 2 and no traceback.

    The message must name what is wrong (the option, file and line) and, where it helps, what was
    expected or which values are valid.
    """
