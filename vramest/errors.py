"""The one error type users see: a plain sentence, exit status 2, no traceback."""


SHORT_CHARS = 60  # how much of a bad value a message echoes
MAX_TEXT_CHARS = 4096  # any one text input (a name, a flag's value, a path: PATH_MAX)


def short(value: object, limit: int = SHORT_CHARS) -> str:
    """A bad value for a message: repr() of at most `limit` characters of it, marked when cut,
    so a 4 MiB field or a terminal escape sequence is never echoed whole."""
    try:
        text = value if isinstance(value, str) else repr(value) if isinstance(
            value, (int, float, bool, type(None))) else f"<{type(value).__name__}>"
    except ValueError:  # an int of more digits than Python converts to text
        return "<a number of thousands of digits>"
    if isinstance(value, str) and len(text) <= limit:
        return repr(text)
    if len(text) <= limit:
        return text
    return repr(text[:limit]) + f"… ({len(text)} characters)"


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
        if value is not None and (len(value) > MAX_TEXT_CHARS or "\x00" in value):
            raise InputError(f"{name} {short(value)} is over {MAX_TEXT_CHARS} characters or "
                             "holds a NUL; no name, format or path is.")
