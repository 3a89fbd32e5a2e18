"""The one exception type users see: a message that names the problem, no deep traceback."""


class MlffcError(Exception):
    """Bad input, a missing file or an unmet requirement, explained in the message."""
