"""Operator registry (entry-point group ``invdiff.operators``) and the spec-string parser.

Spec strings
------------
One stage is ``name`` or ``name:args`` (``args`` is everything after the first colon):
``fft``, ``identity``, ``kcrop:32``, ``kcrop:64x48``, ``kmask:accel=4,acs=24,seed=0``,
``sense:birdcage=8``, ``sense:maps.npy``, ``downsample:2``.

Stages chain with ``|`` and run **left to right, like a shell pipe**:
``"sense:maps.npy|kmask:accel=4"`` first applies SENSE to the image, then the masked FFT to
every coil image, i.e. it builds the operator ``kmask @ sense`` and ``y = kmask(sense(x))``.
Each stage's factory receives as ``image_shape`` the last two axes of the previous stage's output
shape (the first stage gets the image shape).

Plugins
-------
A package registers an operator factory ``(args: str, image_shape: tuple[int, int]) ->
LinearOperator`` under the entry-point group ``invdiff.operators``; the first line of the
factory's docstring is its description in :func:`list_operators`. The built-ins are registered
the same way (see ``pyproject.toml``). As in xarray's ``backends/plugins.py``, entry points are
read once and cached; a plugin that fails to load warns and is skipped; a duplicate name warns;
a built-in wins over a plugin, else the first found (:mod:`invdiff.plugins`).
"""

from __future__ import annotations

import functools
import numbers
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points

from invdiff import plugins
from invdiff.operators.base import LinearOperator
from invdiff.plugins import by_name

GROUP = "invdiff.operators"
Factory = Callable[[str, tuple[int, int]], LinearOperator]


def _entry_points() -> Iterable[EntryPoint]:
    """The installed entry points of the ``invdiff.operators`` group."""
    return entry_points(group=GROUP)


@functools.cache
def registry() -> dict[str, Factory]:
    """Name -> factory for every loadable operator (read once; call ``registry.cache_clear()``)."""
    found: dict[str, Factory] = {}
    for ep in by_name(_entry_points(), "invdiff operator").values():
        try:
            factory = plugins.load(ep, "invdiff operator", ImportError, verb="failed to load")
        except ImportError as err:  # a broken plugin must not break the others
            warnings.warn(str(err), RuntimeWarning, stacklevel=2)
            continue
        if not callable(factory):
            warnings.warn(f"invdiff operator plugin {ep.name!r} ({ep.value}) is not callable",
                          RuntimeWarning, stacklevel=2)
            continue
        found[ep.name] = factory
    return found


def list_operators() -> dict[str, str]:
    """Name -> one-line description of every registered operator (built-ins and plugins)."""
    return {name: _summary(f) for name, f in sorted(registry().items())}


def from_spec(spec: str, image_shape: tuple[int, int]) -> LinearOperator:
    """Build an operator from a spec string such as ``"sense:birdcage=8|kmask:accel=4"``.

    Stages separated by ``|`` are applied left to right (the module docstring has the grammar).

    Args:
        spec: the spec string.
        image_shape: ``(H, W)`` of the images the operator acts on.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"operator spec must be a non-empty string, got {spec!r}")
    if isinstance(image_shape, str | bytes) or not all(
        isinstance(s, numbers.Integral) or (isinstance(s, numbers.Real) and float(s).is_integer())
        for s in image_shape
    ):
        raise ValueError(f"image_shape must be two positive ints (H, W), got {image_shape!r}")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or any(s <= 0 for s in shape):
        raise ValueError(f"image_shape must be two positive ints (H, W), got {tuple(image_shape)}")
    op: LinearOperator | None = None
    for stage in spec.split("|"):
        if not stage.strip():
            raise ValueError(f"empty stage in spec {spec!r}: write stages as 'a|b', one '|' "
                             "between two operators")
        name, _, args = stage.strip().partition(":")
        name = name.strip()
        factories = registry()
        if name not in factories:
            known = ", ".join(sorted(factories)) or "none"
            raise ValueError(f"unknown operator {name!r} in spec {spec!r}; known: {known}")
        stage_shape = shape if op is None else _last_two(op, spec)
        new = factories[name](args, stage_shape)
        if not isinstance(new, LinearOperator):
            raise TypeError(f"operator factory {name!r} returned {type(new).__name__}, "
                            "expected a LinearOperator")
        op = new if op is None else new @ op
    assert op is not None
    return op


def parse_options(args: str, what: str, types: dict[str, type]) -> dict[str, object]:
    """Parse ``"key=value,key=value"`` into typed values; unknown keys and bad values raise.

    Args:
        args: the text after the colon.
        what: operator name for error messages.
        types: allowed keys and their types (``int``, ``float``, ``str``).
    """
    out: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in args.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise ValueError(f"{what}: expected 'key=value', got {item!r} in {args!r}")
        if key not in types:
            raise ValueError(f"{what}: unknown option {key!r}; known: {', '.join(sorted(types))}")
        if key in out:
            raise ValueError(f"{what}: option {key!r} given twice in {args!r}")
        try:
            out[key] = types[key](value)
        except ValueError:
            raise ValueError(f"{what}: option {key}={value!r} is not a valid "
                             f"{types[key].__name__}") from None
    return out


def _last_two(op: LinearOperator, spec: str) -> tuple[int, int]:
    if len(op.oshape) < 2:
        raise ValueError(f"spec {spec!r}: a stage's output {op.oshape} has fewer than 2 axes")
    return op.oshape[-2], op.oshape[-1]


def _summary(factory: Factory) -> str:
    doc = (getattr(factory, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


__all__ = ["GROUP", "Factory", "from_spec", "list_operators", "parse_options", "registry"]
