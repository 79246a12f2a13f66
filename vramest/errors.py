"""The one error type users see: a plain sentence, exit status 2, no traceback."""


class InputError(ValueError):
    """Bad input from the user or a file they handed us.

    The message is one sentence that says what is wrong and what is accepted.
    """


def require_text(**values: object) -> None:
    """The public API's text arguments (names, formats, choices) are str or None; anything
    else is one sentence here rather than an AttributeError deep inside a parser."""
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise InputError(f"{name} must be text (a str) or None, not {type(value).__name__}.")
