"""The project's own error types.

Every problem caused by user input (a spec string, a config file, a data file, a checkpoint) raises a subclass of
`SandbagError` with a one-line message that says what was wrong and what is allowed. The CLI prints that line and
exits non-zero; anything else is a bug and keeps its traceback.
"""


class SandbagError(Exception):
    """Base class: a problem with the user's input, reported as one line."""


class SpecError(SandbagError, ValueError):
    """A technique spec string (e.g. ``l2=1e-3:bias``) that cannot be parsed."""


class DataError(SandbagError):
    """A data set name or data file that cannot be loaded."""


class ModelError(SandbagError):
    """A model name or an input shape the model cannot take; a model factory that cannot be imported, fails, or
    leaves out a layer a technique asks for."""


class CheckpointError(SandbagError):
    """A checkpoint or run folder that cannot be loaded."""


class ConfigError(SandbagError):
    """A run or study configuration (CLI values, TOML file) that is invalid."""


class OutputError(SandbagError):
    """A result that cannot be written (disk full, unwritable folder); earlier files stay intact."""


def one_line(exc: BaseException, limit: int = 200, named: bool = False) -> str:
    """An exception's message as one line: its first line, cut to `limit` characters. Library messages can quote
    file bytes or tracebacks at length, and a user needs their gist. `named`: prefixed with the exception's type
    (for errors raised by the user's own code, where the type is half the message)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if named else text
