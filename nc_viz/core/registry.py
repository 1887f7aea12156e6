"""A name -> item registry in registration order: what the CAM methods (`cams.methods`), the figure
layouts (`figures.layouts`), the data-set readers (`datasets.formats`) and the architecture
families and architectures (`models.registry`) are kept in. Items carry their own `name`.

`import_modules` imports every module of a package, so that a module that registers something
(a data-set reader, an architecture family) is found without being named anywhere else."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterable, Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)

__all__ = ["NamedRegistry", "import_modules"]


class NamedRegistry(Generic[T]):
    """`items` maps each name to its item; a second item of one name is a ValueError."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, T] = {}

    def register(self, item: T) -> T:
        """Add `item` (returned, so that registering can be one expression)."""
        if item.name in self.items:
            article = "an" if self.kind[:1] in "aeiou" else "a"
            raise ValueError(f"{article} {self.kind} named {item.name!r} is already registered")
        self.items[item.name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove the item called `name`, if any (tests register dummies and take them out again)."""
        self.items.pop(name, None)

    def sort(self, key: Callable[[T], object]) -> None:
        """Reorder the items by `key` (a stable sort: equal keys keep their registration order)."""
        ordered = sorted(self.items.values(), key=key)
        self.items.clear()
        self.items.update((item.name, item) for item in ordered)

    def names(self, where: Callable[[T], bool] | None = None) -> tuple[str, ...]:
        """The names in registration order, of the items `where` accepts when it is given."""
        return tuple(name for name, item in self.items.items() if where is None or where(item))


def import_modules(package: str, path: Iterable[str]) -> tuple[str, ...]:
    """Import each public module (its name not starting with `_`) of the package `package`, whose
    folders are `path` (the package's `__path__`), in sorted name order; their full names.

    A module already imported is not run again, so calling this twice registers nothing twice.
    Only the package's own modules are imported (what they import is their own business).
    """
    names = sorted({info.name for info in pkgutil.iter_modules(list(path)) if not info.name.startswith("_")})
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return tuple(f"{package}.{name}" for name in names)
