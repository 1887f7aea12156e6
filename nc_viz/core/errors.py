"""Errors a user can cause. The CLI prints them as one line; no torch here."""
from __future__ import annotations


class NcVizError(Exception):
    """A failure caused by the user's input: shown as `error: <message>`, exit 1."""


class ImageError(NcVizError):
    """An image file that cannot be read or decoded."""


class CheckpointError(NcVizError):
    """A checkpoint that cannot be loaded into the requested architecture."""


class UsageError(NcVizError):
    """An option value that makes no sense for the input (exit 2 in the CLI)."""


class ParameterError(UsageError):
    """A bad value of one named parameter. The library names the parameter (`top_k`); the CLI
    says its flag instead (`--top`): `message` holds `{param}` where the name goes."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.template = message
        super().__init__(self.naming(param))

    def naming(self, name: str) -> str:
        """The message with the parameter called `name` (e.g. its command-line flag)."""
        return self.template.replace("{param}", name)

    def __reduce__(self) -> tuple:
        return type(self), (self.param, self.template)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
