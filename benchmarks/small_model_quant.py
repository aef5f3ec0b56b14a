"""The small model quantized to int8 next to float32, on CPU (see :mod:`hybrid_router.local.quantize`).

Variants: float32; ``int8`` (weight-only, per-channel scales, bf16 matmul kernel); ``int8-dynamic`` (torch.ao dynamic
quantization, int8 weights and activations). For real questions (GSM8K and MT-Bench first turns from the shipped
routing data) each variant generates a fixed number of greedy tokens; the variants take turns per question so that
load changes on a shared machine hit all alike. Reported: decode speed (wall tokens/s, and CPU ms per token, which
other processes disturb less), weight size (serialized state dict, MB), and quality: perplexity of the question
texts, next-token agreement with float32 when both read float32's own greedy answer (teacher forcing), identical
greedy answers, and MiniLM cosine similarity of the answer to float32's.

Usage: python benchmarks/small_model_quant.py [--questions 16] [--max-new-tokens 32] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from hybrid_router import load_routing_data  # noqa: E402
from hybrid_router.core.encoder import Encoder  # noqa: E402
from hybrid_router.local.models import DEFAULT_SMALL_MODEL, load_small_model  # noqa: E402
from hybrid_router.local.quantize import quantize_model, state_size_mb  # noqa: E402
from hybrid_router.train.data import shipped_path  # noqa: E402


def questions(n: int) -> list[str]:
    """Half GSM8K, half MT-Bench first-turn questions (the first ones of each shipped file)."""
    gsm = load_routing_data(shipped_path("routellm_gsm8k")).queries
    mtb = load_routing_data(shipped_path("routellm_mtbench_t1")).queries
    return [q for pair in zip(gsm[: n - n // 2], mtb[: n // 2]) for q in pair][:n]


@torch.inference_mode()
def generate(model, tokenizer, question: str, max_new_tokens: int) -> tuple[list[int], float, float]:
    """(new token ids, wall seconds, CPU seconds) of a fixed-length greedy generation."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    wall, cpu = time.perf_counter(), time.process_time()
    out = model.generate(
        **ids,
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    return out[0, ids["input_ids"].shape[1] :].tolist(), time.perf_counter() - wall, time.process_time() - cpu


@torch.inference_mode()
def perplexity(model, tokenizer, texts: list[str]) -> float:
    """exp(mean token negative log-likelihood) over the texts."""
    nll, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        logits = model(input_ids=ids).logits[0, :-1]
        nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    return math.exp(nll / count)


@torch.inference_mode()
def forced_agreement(model, tokenizer, question: str, answer_ids: list[int]) -> float:
    """Share of positions where ``model``'s argmax equals the next token of ``answer_ids`` (fp32's greedy answer)."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    ids = torch.cat([prompt, torch.tensor([answer_ids])], dim=1)
    predicted = model(input_ids=ids).logits[0, prompt.shape[1] - 1 : -1].argmax(-1)
    return float((predicted == ids[0, prompt.shape[1] :]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--model", default=DEFAULT_SMALL_MODEL, help="shipped name or a model folder (e.g. distilled)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared)")

    model, tokenizer = load_small_model(args.model)
    t0 = time.perf_counter()
    variants = {
        "fp32": model,
        "int8 (weight-only)": quantize_model(model, "int8"),
        "int8-dynamic (torch.ao)": quantize_model(model, "int8-dynamic"),
    }
    quantize_s = time.perf_counter() - t0
    qs = questions(args.questions)
    for m in variants.values():  # warm-up
        generate(m, tokenizer, "Hi", 2)
    results: dict[str, dict[str, list]] = {name: {"ids": [], "wall": [], "cpu": []} for name in variants}
    for q in qs:
        for name, m in variants.items():
            ids, wall, cpu = generate(m, tokenizer, q, args.max_new_tokens)
            results[name]["ids"].append(ids)
            results[name]["wall"].append(wall)
            results[name]["cpu"].append(cpu)

    encoder = Encoder()
    reference = results["fp32"]
    ref_text = [tokenizer.decode(i, skip_special_tokens=True) for i in reference["ids"]]
    print(
        f"\n{len(qs)} questions (GSM8K + MT-Bench), {args.max_new_tokens} greedy tokens each, "
        f"{args.threads} thread(s); quantizing both variants took {quantize_s:.1f} s"
    )
    print(
        "| variant | weights MB | tokens/s (median) | CPU ms/token | perplexity | next-token agreement | "
        "identical answers | similarity to fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, m in variants.items():
        r = results[name]
        tps = statistics.median(args.max_new_tokens / w for w in r["wall"])
        cpu_ms = 1000 * sum(r["cpu"]) / (args.max_new_tokens * len(qs))
        same = sum(a == b for a, b in zip(r["ids"], reference["ids"])) / len(qs)
        forced = statistics.mean(forced_agreement(m, tokenizer, q, ids) for q, ids in zip(qs, reference["ids"]))
        text = [tokenizer.decode(i, skip_special_tokens=True) for i in r["ids"]]
        sims = (encoder.encode(text) * encoder.encode(ref_text)).sum(axis=1)
        print(
            f"| {name} | {state_size_mb(m):.0f} | {tps:.1f} | {cpu_ms:.0f} | {perplexity(m, tokenizer, qs):.2f} | "
            f"{forced:.1%} | {same:.0%} | {float(sims.mean()):.3f} |"
        )
    print(f"\nfirst question: {qs[0][:80]!r}")
    for name, r in results.items():
        print(f"  {name}: {tokenizer.decode(r['ids'][0], skip_special_tokens=True)!r}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
