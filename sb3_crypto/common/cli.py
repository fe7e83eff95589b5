"""Command-line errors: one line and exit status 2, as argparse reports a bad argument.

A command wraps the steps whose failures are the user's to fix (a missing model file, an output
that exists already, a model that does not fit its env) in :func:`usage_errors`; those errors then
print ``usage: ...`` and ``<prog>: error: <message>`` to stderr and exit with status 2 instead of a
traceback. Called as a function (``main(argv)``), the command raises :class:`CommandError`, a
``SystemExit`` whose text is the message.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator


class CommandError(SystemExit):
    """Exit status 2 with a one-line message (``str(error)``) already printed to stderr."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 2


def command_error(parser: argparse.ArgumentParser, message: str) -> CommandError:
    """Print ``message`` as argparse's ``parser.error`` does and return the exception to raise."""
    message = " ".join(str(message).split("\n"))
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return CommandError(message)


@contextlib.contextmanager
def usage_errors(parser: argparse.ArgumentParser, *errors: type[BaseException]) -> Iterator[None]:
    """Turn ``errors`` raised in the block into :class:`CommandError` (status 2, one line)."""
    try:
        yield
    except errors as error:
        raise command_error(parser, str(error)) from None


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]``; argparse names the option when it fails."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse
