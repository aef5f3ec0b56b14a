"""Per-call routing options: validation, the ``routing()`` context manager, and most-specific-wins resolution.

Four keys choose how a call is routed, and one layer (a call kwarg, the call's config metadata, the
``routing()`` context, the model's default...) may set at most one of them:

* ``quality_threshold`` in [0, 1]: small iff score >= threshold (higher: more large calls, higher quality);
* ``max_quality_drop`` in [0, 1]: the cheapest threshold whose calibrated quality drop stays within it;
* ``large_share`` in [0, 1]: the threshold that sends about this share of calls to the large model;
* ``route`` ("small" | "large", ``hybrid_route`` in the wrappers): force a model, skip the router.

Layers are tried from most to least specific; the first layer that sets any of the four decides.

A fifth key, ``strategy`` ("route" | "cascade", ``hybrid_strategy`` in the wrappers), is resolved through the same
layers on its own: a layer may set it next to one of the four, and the most specific layer that sets it wins.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping

ROUTES = ("small", "large")
STRATEGIES = ("route", "cascade")
THRESHOLD_KEYS = ("quality_threshold", "max_quality_drop", "large_share")
#: The four routing keys: a layer sets at most one of them.
_KEYS = (*THRESHOLD_KEYS, "route")
#: Names accepted in call kwargs and config metadata, mapped to :class:`RoutingOptions` fields.
OPTION_ALIASES = {
    "quality_threshold": "quality_threshold",
    "max_quality_drop": "max_quality_drop",
    "large_share": "large_share",
    "hybrid_route": "route",
    "route": "route",
    "hybrid_strategy": "strategy",
    "strategy": "strategy",
}


def validate_fraction(name: str, value: Any) -> float:
    """A float in [0, 1] (not NaN, not bool), or a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def strict_fraction(value: Any, info: Any = None) -> Any:
    """A pydantic ``BeforeValidator`` for the wrappers' threshold, drop and share fields: None, or a number in
    [0, 1] checked before pydantic's coercion (which would turn ``True`` into 1.0); ``info`` names the field."""
    return value if value is None else validate_fraction(getattr(info, "field_name", None) or "value", value)


def validate_route(value: Any) -> str:
    """'small' or 'large', or a ValueError."""
    if value not in ROUTES:
        raise ValueError(f"route must be 'small' or 'large', got {value!r}")
    return value


def validate_strategy(value: Any) -> str:
    """'route' or 'cascade', or a ValueError."""
    if value not in STRATEGIES:
        raise ValueError(f"strategy must be 'route' or 'cascade', got {value!r}")
    return value


@dataclass(frozen=True)
class RoutingOptions:
    """How one call should be routed: at most one of the four routing keys (an empty instance sets none), and
    optionally the strategy."""

    quality_threshold: float | None = None
    max_quality_drop: float | None = None
    large_share: float | None = None
    route: str | None = None
    strategy: str | None = None

    def __post_init__(self) -> None:
        if self.strategy is not None:
            validate_strategy(self.strategy)
        chosen = [name for name in _KEYS if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ValueError(f"set only one of quality_threshold, max_quality_drop, large_share, route; got {chosen}")
        for name in THRESHOLD_KEYS:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, validate_fraction(name, getattr(self, name)))
        if self.route is not None:
            validate_route(self.route)

    @property
    def is_set(self) -> bool:
        """True when this layer sets one of the four routing keys."""
        return any(getattr(self, name) is not None for name in _KEYS)

    @property
    def key(self) -> str | None:
        """The name of the routing key that is set, if any."""
        return next((name for name in _KEYS if getattr(self, name) is not None), None)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "RoutingOptions":
        """Pick the routing keys (see ``OPTION_ALIASES``) out of kwargs, metadata or configurable; ignore the rest."""
        picked: dict[str, Any] = {}
        for alias, field_name in OPTION_ALIASES.items():
            if values and values.get(alias) is not None:
                if field_name in picked and picked[field_name] != values[alias]:
                    raise ValueError(
                        f"conflicting values for {field_name}: {picked[field_name]!r} and {values[alias]!r}"
                    )
                picked[field_name] = values[alias]
        return cls(**picked)


_CURRENT: ContextVar[RoutingOptions] = ContextVar("hybrid_router_routing", default=RoutingOptions())  # noqa: B039 (frozen)


def current_routing() -> RoutingOptions:
    """The options set by the innermost active :func:`routing` block (empty outside any block)."""
    return _CURRENT.get()


@contextmanager
def routing(
    *,
    quality_threshold: float | None = None,
    max_quality_drop: float | None = None,
    large_share: float | None = None,
    route: str | None = None,
    strategy: str | None = None,
) -> Iterator[RoutingOptions]:
    """Set routing defaults for every call inside the block (contextvar-based: thread- and asyncio-safe).

    Tasks created inside the block (``asyncio.create_task``, LlamaIndex workflows, LangChain runnables) copy the
    context and keep the setting. An inner block replaces the outer one; leaving it restores the outer one.
    """
    options = RoutingOptions(
        quality_threshold=quality_threshold,
        max_quality_drop=max_quality_drop,
        large_share=large_share,
        route=route,
        strategy=strategy,
    )
    token = _CURRENT.set(options)
    try:
        yield options
    finally:
        _CURRENT.reset(token)


def resolve_options(layers: list[tuple[str, RoutingOptions | Mapping[str, Any] | None]]) -> tuple[RoutingOptions, str]:
    """The first layer (most specific first) that sets an option, and its name; empty options and ``"none"`` else.

    ``layers`` is e.g. ``[("kwarg", kwargs), ("metadata", md), ("configurable", cfg), ("context", current_routing()),
    ("default", model_defaults)]``. Every layer is validated, so a bad value anywhere raises even when shadowed.
    """
    parsed = [(name, o if isinstance(o, RoutingOptions) else RoutingOptions.from_mapping(o)) for name, o in layers]
    strategy = next((o.strategy for _, o in parsed if o.strategy is not None), None)
    for name, options in parsed:
        if options.is_set:
            return replace(options, strategy=strategy), name
    return RoutingOptions(strategy=strategy), "none"
