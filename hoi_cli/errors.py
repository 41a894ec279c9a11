"""Known failures: one line, a hint, and a documented exit code.

Every error a user can cause (bad input, missing weights, a locked run) is raised as a
`HoiError` subclass; the CLI prints ``error: <message>`` and ``hint: <hint>`` on stderr and
exits with the class's code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from enum import IntEnum
from typing import TextIO


class ExitCode(IntEnum):
    """Exit codes of the `hoi` command (documented in README.md)."""

    OK = 0
    FAILED = 1  # a stage failed for a reason not listed below, or a batch had failures
    USAGE = 2  # bad command-line usage (Typer/Click's own code)
    BAD_INPUT = 3  # missing, unreadable, corrupt or empty input; no hand found
    MISSING_WEIGHTS = 4  # a model file the command needs is absent
    LOCKED = 5  # another process is working on the run
    OUTPUT = 6  # the output location cannot be written (also: disk full)
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; finished stages and clips are kept


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
        text = _one_line(self.message)
        return f"{text} (hint: {_one_line(self.hint)})" if self.hint else text

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


class DiskFullError(OutputError):
    """The disk (or quota) filled up while writing; finished stages are intact and a rerun resumes."""


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT `OSError` behind ``exc`` (itself, or in its cause/context chain), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def known_error(exc: BaseException) -> HoiError | None:
    """``exc`` as a `HoiError` where it is one the user can act on (ours, or a full disk); else None (a bug)."""
    if isinstance(exc, HoiError):
        return exc
    full = disk_full_cause(exc)
    if full is not None:
        where = f" writing {full.filename}" if getattr(full, "filename", None) else ""
        return DiskFullError(f"disk full{where} ({os.strerror(full.errno)})",
                             "free some space (or pick another --out) and run the same command again: "
                             "finished stages are kept and it resumes")
    return None


def failure_of(exc: BaseException, *, interrupted_hint: str, bug_hint: str = "") -> tuple[HoiError, str | None]:
    """One batch item's failure (a clip, a generated row, an evaluated pair): ``(error, traceback)``.

    Known errors keep their code (`known_error`); Ctrl-C or SIGTERM is ``interrupted`` with exit code
    130 and ``interrupted_hint`` (how to resume); anything else is a bug, exit 1, with ``bug_hint``
    and its traceback returned for the item's record (not the terminal). ``traceback`` is None
    unless it is a bug."""
    if isinstance(exc, KeyboardInterrupt):
        return HoiError("interrupted", interrupted_hint, exit_code=ExitCode.INTERRUPTED), None
    known = known_error(exc)
    if known is not None:
        return known, None
    import traceback

    return (HoiError(f"unexpected {type(exc).__name__}: {exc}", bug_hint, exit_code=ExitCode.FAILED),
            "".join(traceback.format_exception(exc)))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def print_error(exc: HoiError, *, prefix: str = "", stream: TextIO | None = None) -> None:
    """The one error printer: ``error: <message>`` and ``hint: <hint>``, one line each, never wrapped.

    Written straight to the stream (not through a wrapping console) so that every message
    stays on one line in logs and `grep error:` finds it whole; coloured only on a terminal.
    """
    stream = stream or sys.stderr
    colour = hasattr(stream, "isatty") and stream.isatty() and not os.environ.get("NO_COLOR")
    red, yellow, reset = ("\033[1;31m", "\033[33m", "\033[0m") if colour else ("", "", "")
    stream.write(f"{red}error:{reset} {prefix}{_one_line(exc.message)}\n")
    if exc.hint:
        stream.write(f"{yellow}hint:{reset} {_one_line(exc.hint)}\n")
    stream.flush()
