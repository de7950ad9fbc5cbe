"""One registry per axis of a trial's configuration (weightings, noise densities, samplers, nets,
data presets), each defined once next to the code it names.

An entry maps a name to a class or function and says which configuration key feeds each of its
arguments, so that the allowed values of the configuration, the builders and the documentation
tables all derive from the registry (k-diffusion's ``config.make_*``, without import-by-string).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One named entry: the object, its config keys by argument, and free-form facts about it."""

    obj: T
    params: Mapping[str, str] = field(default_factory=dict)  # argument -> config key
    info: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named entries of one axis, in registration order.

    Args:
        axis: what the entries are, for messages ("weighting", "noise density", ...).
    """

    def __init__(self, axis: str) -> None:
        self.axis = axis
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, params: Mapping[str, str] | None = None, **info: Any
    ) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under `name`."""

        def add(obj: T) -> T:
            self.add(name, obj, params=params, **info)
            return obj

        return add

    def add(self, name: str, obj: T, *, params: Mapping[str, str] | None = None, **info: Any) -> T:
        if name in self._entries:
            raise ValueError(f"{self.axis} {name!r} is registered twice")
        self._entries[name] = Entry(obj, dict(params or {}), dict(info))
        return obj

    @contextmanager
    def extended(
        self, name: str, obj: T, *, params: Mapping[str, str] | None = None, **info: Any
    ) -> Iterator[Registry[T]]:
        """The registry with one more entry while the block runs (for tests and experiments)."""
        self.add(name, obj, params=params, **info)
        try:
            yield self
        finally:
            del self._entries[name]

    @contextmanager
    def replaced(
        self, name: str, obj: T, *, params: Mapping[str, str] | None = None, **info: Any
    ) -> Iterator[Registry[T]]:
        """The registry with entry `name` replaced while the block runs (tests, experiments)."""
        old = self.entry(name)
        self._entries[name] = Entry(obj, dict(params or {}), dict(info))
        try:
            yield self
        finally:
            self._entries[name] = old

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.axis} {name!r}; known: {', '.join(self)}") from None

    def __getitem__(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return ((name, e.obj) for name, e in self._entries.items())

    def config_keys(self) -> set[str]:
        """Every configuration key that some entry reads."""
        return {key for e in self._entries.values() for key in e.params.values()}

    def build(self, name: str, config: Mapping[str, Any], **context: Any) -> Any:
        """Call entry `name` with its arguments read from `config` and the given `context`."""
        entry = self.entry(name)
        return entry.obj(**{arg: config[key] for arg, key in entry.params.items()}, **context)  # type: ignore[operator]
