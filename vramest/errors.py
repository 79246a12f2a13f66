"""The one error type users see: a plain sentence, exit status 2, no traceback."""


class InputError(ValueError):
    """Bad input from the user or a file they handed us.

    The message is one sentence that says what is wrong and what is accepted.
    """
