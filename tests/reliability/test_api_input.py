"""API input: bools are not thresholds, LangChain's route= is refused, image-only messages route, bad Unicode."""

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from hybrid_router import HybridRouter, RoutingLog, RoutingOptions, routing
from hybrid_router.core.conversation import router_text
from hybrid_router.core.head import LogisticHead
from langchain_hybrid import HybridChatModel
from langchain_hybrid.call_options import RoutingFraction

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.mark.parametrize("key", ["quality_threshold", "max_quality_drop", "large_share"])
def test_a_bool_is_not_a_threshold_share_or_drop(tmp_path, key):
    with pytest.raises(ValueError, match=key):
        RoutingOptions(**{key: True})
    with pytest.raises(ValueError, match=key):
        with routing(**{key: False}):
            pass

    class Fields(BaseModel):
        value: RoutingFraction = None

    with pytest.raises(ValueError, match="must be a number"):
        Fields(value=True)
    assert Fields(value=1).value == 1.0 and Fields().value is None


def test_bools_are_rejected_by_the_router_and_the_log(tmp_path, default_router):
    with pytest.raises(ValueError, match="quality_threshold"):
        default_router.route("hi", quality_threshold=True)
    with pytest.raises(ValueError, match="default_threshold"):
        HybridRouter(LogisticHead([0.0], 0.0), default_threshold=True)
    with pytest.raises(ValueError, match="shadow_rate"):
        RoutingLog(tmp_path / "log.db", shadow_rate=True)


def fake_hybrid() -> HybridChatModel:
    return HybridChatModel(small=FakeListChatModel(responses=["s"]), large=FakeListChatModel(responses=["l"]))


@pytest.mark.parametrize("key", ["quality_threshold", "max_quality_drop", "large_share"])
def test_langchain_model_fields_reject_bools(key):
    with pytest.raises(ValueError, match=key):
        HybridChatModel(
            small=FakeListChatModel(responses=["s"]), large=FakeListChatModel(responses=["l"]), **{key: True}
        )
    model = HybridChatModel(
        small=FakeListChatModel(responses=["s"]), large=FakeListChatModel(responses=["l"]), **{key: 1}
    )
    assert getattr(model, key) == 1.0


def test_langchain_route_kwarg_is_refused_with_a_hint():
    model = fake_hybrid()
    with pytest.raises(ValueError, match="hybrid_route"):
        model.invoke("hi", route="small")
    with pytest.raises(ValueError, match="hybrid_route"):
        model.bind(route="large").invoke("hi")
    answer = model.invoke("hi", hybrid_route="large")
    assert answer.content == "l" and answer.response_metadata["hybrid_router"]["threshold_source"] == "kwarg:route"


def test_an_image_only_message_routes_on_a_placeholder(default_router):
    assert router_text([{"role": "user", "content": [IMAGE, IMAGE]}]) == "[image]\n[image]"
    assert router_text([{"role": "user", "content": [{"type": "text", "text": "what is this?"}, IMAGE]}]) == (
        "what is this?"
    )
    decision = default_router.route([HumanMessage(content=[{"type": "image", "url": "https://example.invalid/a"}])])
    assert decision.target in ("small", "large") and 0.0 <= decision.score <= 1.0
    with_context = [{"role": "user", "content": "Describe the chart."}, {"role": "user", "content": [IMAGE]}]
    assert router_text(with_context) == "[image]\n\nuser: Describe the chart."


@pytest.mark.parametrize("query", ["hi \ud800", [{"role": "user", "content": "hi \udfff there"}]])
def test_a_lone_surrogate_is_a_clear_value_error(default_router, query):
    with pytest.raises(ValueError, match="lone surrogate"):
        default_router.route(query)
    with pytest.raises(ValueError, match="lone surrogate"):
        default_router.score(query)
