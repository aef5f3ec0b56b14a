"""Routing options: validation, the routing() context manager, most-specific-wins resolution."""

import asyncio
import math

import pytest

from hybrid_router import RoutingOptions, current_routing, resolve_options, routing


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, "0.5", True])
def test_invalid_threshold_values(bad):
    with pytest.raises(ValueError, match="quality_threshold"):
        RoutingOptions(quality_threshold=bad)


def test_one_option_per_layer():
    with pytest.raises(ValueError, match="only one"):
        RoutingOptions(quality_threshold=0.5, large_share=0.2)
    with pytest.raises(ValueError, match="route must be"):
        RoutingOptions(route="medium")


def test_from_mapping_reads_aliases_and_ignores_other_keys():
    opts = RoutingOptions.from_mapping({"hybrid_route": "large", "ls_provider": "x"})
    assert opts.route == "large" and opts.key == "route"
    with pytest.raises(ValueError, match="conflicting"):
        RoutingOptions.from_mapping({"hybrid_route": "large", "route": "small"})


def test_most_specific_layer_wins_and_every_layer_is_validated():
    opts, source = resolve_options(
        [("kwarg", {}), ("metadata", {"large_share": 0.3}), ("default", {"quality_threshold": 0.5})]
    )
    assert (source, opts.large_share) == ("metadata", 0.3)
    with pytest.raises(ValueError):
        resolve_options([("kwarg", {"quality_threshold": 0.2}), ("metadata", {"quality_threshold": 2})])
    assert resolve_options([("kwarg", None)]) == (RoutingOptions(), "none")


def test_context_manager_nests_and_restores():
    assert not current_routing().is_set
    with routing(quality_threshold=0.8):
        with routing(route="small"):
            assert current_routing().route == "small"
        assert current_routing().quality_threshold == 0.8
    assert not current_routing().is_set


async def test_context_is_kept_by_tasks_and_isolated_between_them():
    async def read(threshold):
        with routing(quality_threshold=threshold):
            await asyncio.sleep(0)
            inner = asyncio.create_task(asyncio.sleep(0, result=None))
            await inner
            return current_routing().quality_threshold

    values = [i / 100 for i in range(100)]
    assert await asyncio.gather(*(read(v) for v in values)) == values
