"""``HybridDecisionModel``: the router as a LangChain decision model (``langchain_core.decisions``).

LangChain's ``ModelRouterMiddleware(choices=..., classifier=...)`` classifies the latest human message once per
agent run with a :class:`~langchain_core.decisions.BaseDecisionModel` and uses the chosen model for every model
call of that run. With this class as the classifier, the Hybrid LLM router makes that choice::

    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware

    router = ModelRouterMiddleware(
        choices={"small": ModelChoice(small, "easy tasks"), "large": ModelChoice(large, "hard tasks")},
        instructions="Choose the cheapest model that answers well.",
        classifier=HybridDecisionModel(quality_threshold=0.6),
    )
    agent = create_agent(small, tools=[...], middleware=[router])

It answers two kinds of question (others raise ``ValueError``):

* ``Choice`` between the small and the large label (``small_choice``/``large_choice``): the router's decision at the
  threshold the layers give (config metadata, config configurable, the ``routing()`` context, the fields), with
  probabilities that agree with it: P(small) is 0.5 at the threshold and moves linearly to 1 at score 1 and to 0 at
  score 0; a forced ``hybrid_route`` gets probability 1.
* ``Noul``: read as "is the small model good enough?", answered with the router's score (its probability that the
  small model's answer is good enough), whatever the question's wording.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Literal, Mapping, Sequence

from langchain_core.decisions import (
    BaseDecisionModel,
    Choice,
    ChoiceAnswer,
    ClassifierResponse,
    Noul,
    NoulAnswer,
    Question,
    State,
)
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig, ensure_config
from pydantic import ConfigDict, Field, model_validator

from hybrid_router import HybridRouter, RouteDecision, RoutingOptions

from .call_options import RoutingFraction, resolve_call_options


def small_probability(decision: RouteDecision) -> float:
    """P(small) for a decision: 0.5 at the threshold, linear to 1 at score 1 and to 0 at score 0; 1 or 0 when
    the route was forced. It is at least 0.5 exactly when the decision is small."""
    if decision.score is None or decision.threshold is None:
        return 1.0 if decision.target == "small" else 0.0
    score, threshold = decision.score, decision.threshold
    if score >= threshold:
        return 1.0 if threshold >= 1.0 else 0.5 + 0.5 * (score - threshold) / (1.0 - threshold)
    return 0.5 * score / threshold


def state_query(state: State) -> str | list[Any]:
    """The router input for a decision model's state: a string, or a message list (a ``messages`` key of a
    mapping, a message, a sequence of messages); other JSON is routed on its JSON text."""
    if isinstance(state, str):
        return state
    if isinstance(state, BaseMessage):
        return [state]
    if isinstance(state, Mapping) and isinstance(state.get("messages"), Sequence):
        return state_query(state["messages"])
    if isinstance(state, Sequence) and state and all(isinstance(item, BaseMessage) for item in state):
        return list(state)
    return json.dumps(state, default=str, ensure_ascii=False)


class HybridDecisionModel(BaseDecisionModel):
    """A LangChain decision model answered by a :class:`~hybrid_router.HybridRouter` (see the module docs).

    Routing options come from, most specific first: the call's ``config["metadata"]`` (also inherited from an
    enclosing agent run), ``config["configurable"]``, the :func:`hybrid_router.routing` context, then the fields.
    Each place takes one of ``quality_threshold``, ``max_quality_drop``, ``large_share`` or ``hybrid_route``.
    """

    model: str = "hybrid-router"
    """The name reported in responses and traces."""
    router: HybridRouter = Field(default_factory=HybridRouter.shared_default, exclude=True)
    """The router (default: the shipped one, shared with the other wrappers)."""
    small_choice: str = "small"
    """The ``Choice`` label of the small model."""
    large_choice: str = "large"
    """The ``Choice`` label of the large model."""
    quality_threshold: RoutingFraction = None
    """Default quality threshold in [0, 1] (None: the router's default); higher chooses ``large`` more often."""
    max_quality_drop: RoutingFraction = None
    """Default: the cheapest threshold whose calibrated quality drop stays within this."""
    large_share: RoutingFraction = None
    """Default: the threshold that sends about this share of requests to ``large``."""
    hybrid_route: Literal["small", "large"] | None = None
    """Default: always choose this model (skip the router)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @model_validator(mode="after")
    def _check_options(self) -> "HybridDecisionModel":
        RoutingOptions.from_mapping(self._routing_defaults())
        if self.small_choice == self.large_choice:
            raise ValueError(f"small_choice and large_choice must differ, both are {self.small_choice!r}")
        return self

    @property
    def _provider(self) -> str:
        return "hybrid"

    def _routing_defaults(self) -> dict[str, Any]:
        return {
            "quality_threshold": self.quality_threshold,
            "max_quality_drop": self.max_quality_drop,
            "large_share": self.large_share,
            "hybrid_route": self.hybrid_route,
        }

    def decide(self, state: State, config: RunnableConfig | None = None) -> RouteDecision:
        """The router's decision for ``state`` under the options of ``config`` (or the current run's config)."""
        config = ensure_config(config)
        options, source = resolve_call_options(
            {}, config.get("metadata"), config.get("configurable"), self._routing_defaults()
        )
        # a decision model only chooses: a cascade (``hybrid_strategy``) is the chat model's business
        return self.router.decide(state_query(state), replace(options, strategy=None), source)

    def _check_questions(self, questions: Mapping[str, Question]) -> None:
        labels = {self.small_choice, self.large_choice}
        for name, question in questions.items():
            if isinstance(question, Choice):
                if set(question.criteria) != labels:
                    raise ValueError(
                        f"HybridDecisionModel chooses between {self.small_choice!r} (small) and "
                        f"{self.large_choice!r} (large); question {name!r} offers {sorted(question.criteria)}: "
                        "name the choices so, or set small_choice= and large_choice="
                    )
            elif not isinstance(question, Noul):
                raise ValueError(
                    f"HybridDecisionModel answers Choice and Noul questions; {name!r} is a {question.type!r} question"
                )

    def _classify(self, state: State, questions: dict[str, Question]) -> ClassifierResponse:
        self._check_questions(questions)
        decision = self.decide(state)
        small = small_probability(decision)
        answers: dict[str, Any] = {}
        for name, question in questions.items():
            if isinstance(question, Choice):
                chosen = self.small_choice if decision.target == "small" else self.large_choice
                answers[name] = ChoiceAnswer(
                    type="choice",
                    choice=chosen,
                    probabilities={self.small_choice: small, self.large_choice: 1.0 - small},
                    confidence=small if decision.target == "small" else 1.0 - small,
                )
            else:
                score = decision.score if decision.score is not None else self.router.score(state_query(state))
                answers[name] = NoulAnswer(type="noul", noul=score)
        return ClassifierResponse(model=self.model, answers=answers)
