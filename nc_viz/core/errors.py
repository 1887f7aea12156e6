"""Errors a user can cause. The CLI prints them as one line; no torch here."""
from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Mapping


class NcVizError(Exception):
    """A failure caused by the user's input: shown as `error: <message>`, exit 1."""


class ImageError(NcVizError):
    """An image file that cannot be read or decoded."""


class CheckpointError(NcVizError):
    """A checkpoint that cannot be loaded into the requested architecture."""


class UsageError(NcVizError):
    """An option value that makes no sense for the input (exit 2 in the CLI)."""


# `{param}`: the error's own parameter; `{param:NAME}`: another parameter the message names
_NAMED = re.compile(r"\{param(?::([A-Za-z_]\w*))?\}")
_RENAMED: ContextVar[Mapping[str, str]] = ContextVar("ncviz_renamed_parameters", default={})


def _current(name: str) -> str:
    return _RENAMED.get().get(name, name)


@contextmanager
def parameters_renamed(**names: str) -> Iterator[None]:
    """Inside, parameter errors and `Param`s made for `old` name `new` instead (`old=new`): a
    caller whose own parameter feeds a callee's (`load_model_pair`'s `nc_arch` is the `arch`
    of its second `load_checkpoint`) says so once instead of passing names down."""
    token = _RENAMED.set({**_RENAMED.get(), **names})
    try:
        yield
    finally:
        _RENAMED.reset(token)


def name_parameters(template: str, param: str, namer: Callable[[str], str] | str) -> str:
    """`template` with `{param}` -> `param` and `{param:NAME}` -> NAME, each passed through
    `namer` (the CLI's gives the flag); a string `namer` replaces `{param}` only."""
    if isinstance(namer, str):
        text = namer
        return _NAMED.sub(lambda m: m.group(1) or text, template)
    return _NAMED.sub(lambda m: namer(m.group(1) or param), template)


class NamesParameters(NcVizError):
    """An error whose message names library parameters, never command-line flags:
    `message` holds `{param}` where `param` goes and `{param:NAME}` where another parameter
    goes. str() reads the parameter names; the CLI says each one's flag (`naming`)."""

    def __init__(self, param: str, message: str) -> None:
        self.param = _current(param)
        self.template = _NAMED.sub(lambda m: "{param:%s}" % _current(m.group(1)) if m.group(1) else m.group(0),
                                   message)
        super().__init__(self.naming(str))  # type: ignore[call-arg]

    def naming(self, namer: Callable[[str], str] | str) -> str:
        """The message with each parameter called `namer(name)` (e.g. its command-line flag);
        a string names this error's own parameter."""
        return name_parameters(self.template, self.param, namer)

    def __reduce__(self) -> tuple:
        return type(self), (self.param, self.template)


class ParameterError(NamesParameters, UsageError):
    """A bad value of one named parameter (exit 2 in the CLI). The library names the parameter
    (`top_k`); the CLI says its command-line flag instead."""


class ParameterFailure(NamesParameters):
    """A parameter's value this machine or input cannot serve (no such CUDA device, a missing
    optional package): exit 1 in the CLI, the message naming parameters as ParameterError's."""


class CheckpointParameterError(NamesParameters, CheckpointError):
    """A checkpoint that needs another value of a named parameter (`arch`) to load."""


class Param:
    """A parameter named in a log message's arguments: reads as its name (renamed as
    `parameters_renamed` says); the CLI's log handler shows its flag instead."""

    def __init__(self, name: str) -> None:
        self.name = _current(name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Param({self.name!r})"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
