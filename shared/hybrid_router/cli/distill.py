"""``hybrid-llm distill DATA.jsonl --base smollm2-135m --out DIR [--steps N --lora]``: fine-tune the small model."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``distill`` subcommand."""
    from ..local.models import DEFAULT_SMALL_MODEL

    p = sub.add_parser(
        "distill",
        help="fine-tune the small model on chat-messages JSONL (from export-sft)",
        description="Supervised fine-tuning, loss on assistant turns only; the saved folder loads "
        "with load_small_model(DIR).",
    )
    p.add_argument("data", help='chat-messages JSONL ({"messages": [...]} per line)')
    p.add_argument(
        "--base", default=DEFAULT_SMALL_MODEL, help=f"base model name or folder (default: {DEFAULT_SMALL_MODEL})"
    )
    p.add_argument("--out", required=True, help="output folder for the fine-tuned model")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (default: 100)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3 with --lora, else 3e-5)")
    p.add_argument("--max-length", type=int, default=384, help="max tokens per example")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the weights when saving)")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, save and print the loss curve summary."""
    from ..local.distill import DistillConfig, distill
    from ..traffic.exports import read_sft_jsonl

    conversations = read_sft_jsonl(args.data)
    config = DistillConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        max_length=args.max_length,
        lora=args.lora,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        seed=args.seed,
        device=args.device,
    )

    def on_step(step: int, loss: float) -> None:
        if step == 1 or step % 10 == 0 or step == config.steps:
            print(f"step {step}/{config.steps} loss {loss:.4f}", flush=True)

    result = distill(conversations, args.out, base=args.base, config=config, on_step=on_step)
    print(
        f"trained on {result.n_examples} examples ({result.trainable_params:,} trainable parameters, "
        f"{result.device}) in {result.seconds:.0f} s; saved to {result.out_dir}"
    )
    return 0
