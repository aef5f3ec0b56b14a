"""Where a LangChain call's routing options come from: call kwargs, config metadata, config configurable.

The layers, most specific first, are handed to :func:`hybrid_router.resolve_options`: the call's keyword
arguments (``model.invoke(x, quality_threshold=0.7)``, ``model.bind(...)``), the call's ``config["metadata"]``
(which also carries the metadata of every enclosing chain), ``config["configurable"]``, the
:func:`hybrid_router.routing` context, and the model's own defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping, Optional

from langchain_core.runnables import RunnableConfig, ensure_config
from pydantic import BeforeValidator

from hybrid_router import RoutingOptions, current_routing, resolve_options
from hybrid_router.core.options import strict_fraction

#: Keys read from call kwargs, ``config["metadata"]`` and ``config["configurable"]``.
ROUTING_KEYS = ("quality_threshold", "max_quality_drop", "large_share", "hybrid_route", "hybrid_strategy")


#: The type of a model field holding a threshold, drop or share: None or a number in [0, 1] (bools rejected).
RoutingFraction = Annotated[Optional[float], BeforeValidator(strict_fraction)]


def pick_routing(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The routing keys of a mapping (other keys, e.g. a user's own ``route`` metadata, are ignored)."""
    return {key: values[key] for key in ROUTING_KEYS if values and values.get(key) is not None}


def pop_routing(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the routing keys from call kwargs (so they never reach a child model) and return them.

    A ``route=`` kwarg is a ValueError: it is not a routing option here (it would reach the child model);
    forcing a model is ``hybrid_route=``.
    """
    if "route" in kwargs:
        raise ValueError(
            f"route={kwargs['route']!r} is not a HybridChatModel call option (it would be passed to the child "
            f"model); to force a model use hybrid_route='small' or hybrid_route='large'"
        )
    return {key: value for key in ROUTING_KEYS if (value := kwargs.pop(key, None)) is not None}


def resolve_call_options(
    call_options: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    configurable: Mapping[str, Any] | None,
    defaults: Mapping[str, Any],
) -> tuple[RoutingOptions, str]:
    """The options that decide one call and the name of their layer (every layer is validated)."""
    return resolve_options(
        [
            ("kwarg", dict(call_options)),
            ("metadata", pick_routing(metadata)),
            ("configurable", pick_routing(configurable)),
            ("context", current_routing()),
            ("default", pick_routing(defaults)),
        ]
    )


def resolve_from_config(
    call_options: Mapping[str, Any], config: RunnableConfig | None, defaults: Mapping[str, Any]
) -> tuple[RoutingOptions, str]:
    """:func:`resolve_call_options` with metadata and configurable read from a (possibly inherited) config."""
    config = ensure_config(config)
    return resolve_call_options(call_options, config.get("metadata"), config.get("configurable"), defaults)
