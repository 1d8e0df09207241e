"""Cheap construction of frozen message dataclasses on the verify / notify hot path.

A frozen dataclass's generated ``__init__`` stores every field through
``object.__setattr__`` (it has to: the class's own ``__setattr__`` refuses), about 0.1 µs a
field in CPython 3.11, so a 15-field :class:`~scanpay.wechat.v3.transactions.Transaction` costs
~2 µs to build. :func:`assemble` makes the same instance by filling the new object's
``__dict__`` in one call (about a quarter of that). The result is an ordinary instance of the
class: frozen (assignment still raises ``FrozenInstanceError``), equal to and hashing like one
built by the constructor, usable with ``dataclasses.replace``.

:func:`adopt` does the same with a dict the caller built (the notification hot path).

Contract for callers: ``cls`` is a frozen dataclass *without* ``slots`` and without
``__post_init__`` (nothing is validated here), and every field is given, by name, with a value
already checked. ``tests/wechat/v3/test_frozen.py`` holds each message type to that.
"""

from __future__ import annotations

from typing import TypeVar

M = TypeVar("M")


def assemble(cls: type[M], /, **values: object) -> M:
    """An instance of the frozen dataclass ``cls`` with exactly ``values`` as its fields."""
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


def adopt(cls: type[M], values: dict[str, object], /) -> M:
    """:func:`assemble` taking a fresh dict (a literal at the call site), which becomes the
    instance's ``__dict__`` as it is: no keyword packing, no copy. Same contract; the caller
    must not keep or reuse ``values``."""
    instance = object.__new__(cls)
    object.__setattr__(instance, "__dict__", values)
    return instance
