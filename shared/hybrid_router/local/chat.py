"""Chat generation with a local transformers model: the engine behind the LangChain / LlamaIndex local models and
the ``hybrid-llm serve`` small model.

Messages are OpenAI-style dicts (``role``, ``content``, optional ``tool_calls`` / ``tool_call_id``). The model's own
chat template builds the prompt; ``tools`` (OpenAI function schemas) are handed to the template, and when the
template knows tools, ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks in the output (the
Hermes / Qwen / SmolLM3 convention) become tool calls. SmolLM2-135M's template has no tool support: it answers in
text. Token counts are exact (prompt ids and generated ids). Generation is greedy unless ``temperature > 0``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ..core.conversation import content_text
from .models import DEFAULT_SMALL_MODEL, load_small_model, model_display_name

TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


@dataclass
class ChatOutput:
    """One finished generation: text, parsed tool calls, exact token counts and the OpenAI-style finish reason."""

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def usage(self) -> dict[str, int]:
        """OpenAI-style usage dict."""
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Split ``<tool_call>{json}</tool_call>`` blocks out of ``text``; returns (remaining text, tool calls).

    Each call is ``{"id", "name", "arguments"}`` with ``arguments`` a dict; malformed blocks stay in the text.
    """
    calls: list[dict[str, Any]] = []

    def take(match: re.Match[str]) -> str:
        try:
            data = json.loads(match.group(1))
        except ValueError:
            return match.group(0)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return match.group(0)
        arguments = data.get("arguments", data.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return match.group(0)
        calls.append({"id": f"call_{uuid.uuid4().hex[:12]}", "name": data["name"], "arguments": arguments or {}})
        return ""

    remaining = TOOL_CALL_RE.sub(take, text)
    return (remaining.strip() if calls else remaining), calls


def _template_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message the chat template can render (string content; tool calls in the HF ``function`` form)."""
    out: dict[str, Any] = {"role": message.get("role", "user"), "content": content_text(message.get("content"))}
    if message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            function = call.get("function", call)
            arguments = function.get("arguments", function.get("args", {}))
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    pass
            calls.append({"type": "function", "function": {"name": function.get("name"), "arguments": arguments}})
        out["tool_calls"] = calls
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    if message.get("name"):
        out["name"] = message["name"]
    return out


class _StopOnEvent:
    """Stopping criterion that ends generation once ``event`` is set (a stream consumer went away)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.event.is_set()


#: The default repetition penalty (transformers' ``repetition_penalty``; 1.0 is none): mild enough to keep short
#: factual answers unchanged ("The capital of France is Paris."), enough to stop the 135M model's greedy loops.
DEFAULT_REPETITION_PENALTY = 1.1


class LocalChat:
    """A local causal LM + tokenizer that chats: :meth:`generate` (whole answer) and :meth:`stream` (text pieces).

    Calls on one instance are serialized (one model, one CPU); ``max_new_tokens`` and ``temperature`` are defaults
    that each call may override. ``repetition_penalty`` (None: :data:`DEFAULT_REPETITION_PENALTY`; 1.0 turns it
    off) keeps the shipped 135M model out of loops such as "La femme de France est la femme de la femme
    de la femme ..." that greedy decoding falls into with some system prompts.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = DEFAULT_SMALL_MODEL,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        repetition_penalty: float | None = None,
    ):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.repetition_penalty = DEFAULT_REPETITION_PENALTY if repetition_penalty is None else repetition_penalty
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty!r}")
        self._lock = threading.Lock()

    @classmethod
    def load(cls, name: str = DEFAULT_SMALL_MODEL, **kwargs: Any) -> "LocalChat":
        """Load ``name`` (see :func:`hybrid_router.local_models.load_small_model`) and wrap it."""
        model, tokenizer = load_small_model(name)
        return cls(model, tokenizer, name=model_display_name(name), **kwargs)

    @property
    def supports_tools(self) -> bool:
        """True when the chat template renders a ``tools`` list (so the model was trained to call tools)."""
        return "tools" in (self.tokenizer.chat_template or "")

    def prompt_ids(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None) -> Any:
        """Token ids (1 x n tensor) of the chat prompt, ready for the assistant's turn."""
        if not messages:
            raise ValueError("no messages to answer")
        rendered = [_template_message(m) for m in messages]
        kwargs: dict[str, Any] = {"tools": list(tools)} if tools and self.supports_tools else {}
        encoded = self.tokenizer.apply_chat_template(
            rendered, add_generation_prompt=True, return_tensors="pt", return_dict=True, **kwargs
        )
        return encoded["input_ids"]

    def _generate_kwargs(
        self, input_ids: Any, max_new_tokens: int | None, temperature: float | None, stop: Sequence[str] | None
    ) -> dict[str, Any]:
        from transformers import StoppingCriteriaList

        temperature = self.temperature if temperature is None else temperature
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": input_ids.new_ones(input_ids.shape),
            "max_new_tokens": int(max_new_tokens or self.max_new_tokens),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            "do_sample": bool(temperature and temperature > 0),
            "stopping_criteria": StoppingCriteriaList(),
        }
        if kwargs["do_sample"]:
            kwargs["temperature"] = float(temperature)
        else:  # silence sampling settings inherited from the model's generation_config
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = float(self.repetition_penalty)
        return kwargs

    def _finish(
        self,
        text: str,
        input_tokens: int,
        new_ids: Any,
        max_new: int,
        stop: Sequence[str] | None,
        tools: Sequence[dict[str, Any]] | None,
    ) -> ChatOutput:
        output_tokens = int(new_ids.shape[-1])
        for s in stop or ():
            cut = text.find(s)
            if cut >= 0:
                text = text[:cut]
        finish = "length" if output_tokens >= max_new and int(new_ids[-1]) != self.tokenizer.eos_token_id else "stop"
        calls: list[dict[str, Any]] = []
        if tools and self.supports_tools:
            text, calls = parse_tool_calls(text)
            if calls:
                finish = "tool_calls"
        return ChatOutput(text, input_tokens, output_tokens, finish, calls)

    def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> ChatOutput:
        """The whole answer to ``messages``."""
        import torch

        input_ids = self.prompt_ids(messages, tools)
        kwargs = self._generate_kwargs(input_ids, max_new_tokens, temperature, stop)
        with self._lock, torch.inference_mode():
            output = self.model.generate(**kwargs)
        new_ids = output[0, input_ids.shape[1] :]
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        return self._finish(text, int(input_ids.shape[1]), new_ids, kwargs["max_new_tokens"], stop, tools)

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Iterator[str | ChatOutput]:
        """Yield text pieces as they are generated, then one :class:`ChatOutput` with the totals.

        Text that may be the start of a ``stop`` string is held back until it is decided; with ``tools`` on a
        tool-capable template the whole text is held back (a tool call cannot be streamed as text). Closing the
        iterator early stops the generation.
        """
        import torch
        from transformers import TextIteratorStreamer

        input_ids = self.prompt_ids(messages, tools)
        kwargs = self._generate_kwargs(input_ids, max_new_tokens, temperature, stop)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()
        kwargs["stopping_criteria"].append(_StopOnEvent(cancelled))
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    box["output"] = self.model.generate(streamer=streamer, **kwargs)
            except BaseException as exc:  # re-raised in the consumer
                box["error"] = exc
                streamer.end()

        worker = threading.Thread(target=run, daemon=True, name="hybrid-llm-local-generate")
        worker.start()
        hold_all = bool(tools) and self.supports_tools  # a tool call cannot be streamed as text
        keep = max((len(x) for x in stop or ()), default=1) - 1  # a stop string may still be forming
        text, sent = "", 0
        try:
            for piece in streamer:
                if "error" in box:
                    break
                text += piece
                if hold_all:
                    continue
                cuts = [i for i in (text.find(x) for x in stop or ()) if i >= 0]
                safe = min(cuts) if cuts else len(text) - keep
                if safe > sent:
                    yield text[sent:safe]
                    sent = safe
            worker.join()
        finally:
            cancelled.set()
        if "error" in box:
            raise box["error"]
        new_ids = box["output"][0, input_ids.shape[1] :]
        final = self._finish(text, int(input_ids.shape[1]), new_ids, kwargs["max_new_tokens"], stop, tools)
        if len(final.text) > sent:
            yield final.text[sent:]
        yield final
