"""A name -> item registry in registration order: what the CAM methods (`cams.methods`), the figure
layouts (`figures.layouts`), the data-set readers (`datasets.formats`) and the architecture
families and architectures (`models.registry`) are kept in. Items carry their own `name`."""
from __future__ import annotations

from typing import Callable, Generic, Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)

__all__ = ["NamedRegistry"]


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

    def names(self, where: Callable[[T], bool] | None = None) -> tuple[str, ...]:
        """The names in registration order, of the items `where` accepts when it is given."""
        return tuple(name for name, item in self.items.items() if where is None or where(item))
