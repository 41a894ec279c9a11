"""Known failures: one line, a hint, and a documented exit code.

Every error a user can cause (bad input, missing weights, a locked run) is raised as a
`HoiError` subclass; the CLI prints ``error: <message>`` and ``hint: <hint>`` on stderr and
exits with the class's code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the `hoi` command (documented in README.md)."""

    OK = 0
    FAILED = 1  # a stage failed for a reason not listed below, or a batch had failures
    USAGE = 2  # bad command-line usage (Typer/Click's own code)
    BAD_INPUT = 3  # missing, unreadable, corrupt or empty input; no hand found
    MISSING_WEIGHTS = 4  # a model file the command needs is absent
    LOCKED = 5  # another process is working on the run
    OUTPUT = 6  # the output location cannot be written


class HoiError(Exception):
    """An error with a one-line message, a hint and an exit code."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str = "", *, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def one_line(self) -> str:
        text = self.message.replace("\n", " ")
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_json(self) -> dict:
        return {"error": self.message, "hint": self.hint, "exit_code": int(self.exit_code),
                "kind": type(self).__name__}


class BadInputError(HoiError):
    exit_code = ExitCode.BAD_INPUT


class NoHandsError(BadInputError):
    pass


class MissingWeightsError(HoiError):
    exit_code = ExitCode.MISSING_WEIGHTS

    def __init__(self, what: str, filename: str, looked_in: list[str], hint: str = ""):
        where = ", ".join(looked_in) if looked_in else "nowhere (no weights dir set)"
        super().__init__(
            f"missing weights for {what}: {filename} (looked in {where})",
            hint or _get_hint(filename),
        )
        self.filename = filename
        self.looked_in = looked_in


def _get_hint(filename: str) -> str:
    """The default hint: the `hoi weights get` command for a known file, else where to put it."""
    from .model_files import key_for_file

    key = key_for_file(filename)
    fetch = f"run `hoi weights get {key}`, or " if key else ""
    return f"{fetch}put {filename} in a folder given by --weights-dir or HOI_WEIGHTS_DIR"


class RunLockedError(HoiError):
    exit_code = ExitCode.LOCKED


class OutputError(HoiError):
    exit_code = ExitCode.OUTPUT
