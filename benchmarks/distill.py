"""Distillation benchmark: does fine-tuning SmolLM2-135M on a teacher's logged answers improve it on held-out queries?

The whole loop runs through the product's own pieces: calls are written to a ``RoutingLog`` (teacher answers as the
large model's, the student's as the small model's, teacher shadow answers for the held-out queries), graded with
``score-log --scorer match`` against references, filtered with ``export-sft --min-score 1`` and fine-tuned with
``distill``; the held-out queries are then answered again by the distilled model and graded the same way.

THE TEACHER. No large model exists offline here and the GSM8K reference solutions are not shipped, so the teacher is
a *scripted solver*: grade-school arithmetic word problems are generated from GSM8K-style templates with random
names and numbers, and the solver writes a short worked answer ("... 12 + 7 = 19. ... The answer is 19."). To give
the rejection filter real work, ``--slip-rate`` (default 15%) of the teacher's answers carry a deliberate arithmetic
slip in the last step; the match scorer marks them wrong and ``export-sft`` drops them. Held-out queries use new
numbers and names; ``--unseen-templates`` templates never appear in training (a transfer test).

Scores: ``match`` accuracy (numeric final answer, the scorer of ``score-log``) on the held-out queries, split into
seen / unseen templates, and ``embed`` similarity (MiniLM cosine) of the student's answer to the teacher's.

Usage: python benchmarks/distill.py [--train 192] [--test 36] [--steps 30] [--batch-size 4] [--full] [--workdir DIR]
About 11 CPU-minutes (LoRA; full fine-tuning about the same: slower steps, no LoRA set-up) on one thread.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from hybrid_router import Answered, RouteDecision  # noqa: E402
from hybrid_router.local.distill import DistillConfig, distill  # noqa: E402
from hybrid_router.local.models import DEFAULT_SMALL_MODEL, load_small_model  # noqa: E402
from hybrid_router.traffic.exports import export_sft, read_sft_jsonl  # noqa: E402
from hybrid_router.traffic.log_scoring import EmbedScorer, MatchScorer, load_references, read_scores, score_log  # noqa: E402
from hybrid_router.traffic.routing_log import RoutingLog, read_calls  # noqa: E402

NAMES = ["Sam", "Maria", "Tom", "Aisha", "Leo", "Nina", "Omar", "Julia", "Ken", "Rosa", "Ivan", "Mei"]


@dataclass
class Problem:
    """A generated word problem, its worked teacher answer and the true result."""

    template: int
    question: str
    solution: str
    answer: int


def _problem(template: int, rng: random.Random) -> Problem:
    """One problem from template ``template`` (0-9) with random names and numbers."""
    n = rng.choice(NAMES)
    r = rng.randint
    if template == 0:
        a, b, c = r(5, 40), r(2, 20), r(1, 5)
        q = f"{n} has {a} apples. {n} buys {b} more and then gives {c} to a friend. How many apples does {n} have now?"
        steps = [
            f"{n} starts with {a} apples and buys {b} more: {a} + {b} = {a + b}.",
            f"After giving away {c}: {a + b} - {c} = {a + b - c}.",
        ]
        return Problem(template, q, " ".join(steps), a + b - c)
    if template == 1:
        a, b, c = r(2, 12), r(2, 9), r(1, 9)
        q = f"A box holds {a} pencils. {n} buys {b} boxes and loses {c} pencils. How many pencils are left?"
        steps = [f"{b} boxes of {a} pencils: {b} * {a} = {a * b}.", f"After losing {c}: {a * b} - {c} = {a * b - c}."]
        return Problem(template, q, " ".join(steps), a * b - c)
    if template == 2:
        a, b, c = r(5, 15), r(2, 8), r(1, 20)
        q = f"{n} earns ${a} per hour and works {b} hours. Then {n} spends ${c} on lunch. How much money is left?"
        steps = [f"{n} earns {a} * {b} = {a * b} dollars.", f"After lunch: {a * b} - {c} = {a * b - c}."]
        return Problem(template, q, " ".join(steps), a * b - c)
    if template == 3:
        a, b = r(5, 20), r(2, 7)
        c = a * b + r(3, 60)
        q = f"{n} reads {a} pages a day for {b} days. The book has {c} pages. How many pages are left to read?"
        steps = [f"In {b} days {n} reads {a} * {b} = {a * b} pages.", f"Pages left: {c} - {a * b} = {c - a * b}."]
        return Problem(template, q, " ".join(steps), c - a * b)
    if template == 4:
        b, k, c = r(2, 9), r(2, 12), r(1, 10)
        a = b * k
        q = (
            f"{n} bakes {a} cookies, shares them equally among {b} friends and then bakes {c} more for each friend. "
            f"How many cookies does each friend get?"
        )
        steps = [f"Each friend first gets {a} / {b} = {k} cookies.", f"Then {c} more each: {k} + {c} = {k + c}."]
        return Problem(template, q, " ".join(steps), k + c)
    if template == 5:
        a = r(15, 40)
        b, c = r(3, a - 5), r(2, 6)
        q = (
            f"There are {a} students in a class and {b} of them are girls. Each boy has {c} pencils. "
            f"How many pencils do the boys have in total?"
        )
        steps = [f"There are {a} - {b} = {a - b} boys.", f"They have {a - b} * {c} = {(a - b) * c} pencils."]
        return Problem(template, q, " ".join(steps), (a - b) * c)
    if template == 6:
        a, b, c, d = r(2, 9), r(1, 5), r(2, 9), r(1, 5)
        q = f"{n} buys {a} apples at ${b} each and {c} bananas at ${d} each. How much does {n} spend in dollars?"
        steps = [
            f"Apples cost {a} * {b} = {a * b} and bananas cost {c} * {d} = {c * d}.",
            f"In total: {a * b} + {c * d} = {a * b + c * d}.",
        ]
        return Problem(template, q, " ".join(steps), a * b + c * d)
    if template == 7:
        a, b, c = r(20, 60), r(2, 5), r(5, 40)
        q = f"A train travels {a} miles per hour for {b} hours, then {c} more miles. How many miles does it travel?"
        steps = [f"First {a} * {b} = {a * b} miles.", f"Then {a * b} + {c} = {a * b + c} miles."]
        return Problem(template, q, " ".join(steps), a * b + c)
    if template == 8:
        b, c = r(3, 30), r(3, 20)
        a = b + c + r(5, 50)
        q = f"{n} had ${a}. {n} spent ${b} on a book and ${c} on lunch. How many dollars does {n} have left?"
        steps = [f"{n} spent {b} + {c} = {b + c} dollars.", f"Left: {a} - {b + c} = {a - b - c}."]
        return Problem(template, q, " ".join(steps), a - b - c)
    a, b = r(2, 9), r(3, 12)
    c = r(2, a * b - 1)
    q = f"A farmer has {a} rows of {b} trees. {c} trees are cut down. How many trees are left?"
    steps = [f"There are {a} * {b} = {a * b} trees.", f"After cutting {c}: {a * b} - {c} = {a * b - c}."]
    return Problem(template, q, " ".join(steps), a * b - c)


N_TEMPLATES = 10


def make_problems(n_train: int, n_test: int, unseen: int, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Train and held-out problems; the last ``unseen`` templates appear only in the held-out set."""
    rng = random.Random(seed)
    seen_templates = list(range(N_TEMPLATES - unseen))
    questions: set[str] = set()

    def draw(templates: Sequence[int], count: int) -> list[Problem]:
        out: list[Problem] = []
        while len(out) < count:
            p = _problem(rng.choice(templates), rng)
            if p.question not in questions:
                questions.add(p.question)
                out.append(p)
        return out

    train = draw(seen_templates, n_train)
    n_unseen = n_test // 3 if unseen else 0
    test = draw(seen_templates, n_test - n_unseen) + draw(range(N_TEMPLATES - unseen, N_TEMPLATES), n_unseen)
    return train, test


def teacher_answer(problem: Problem, rng: random.Random, slip_rate: float) -> str:
    """The scripted teacher's worked answer; with probability ``slip_rate`` the final result is wrong."""
    result = problem.answer
    if rng.random() < slip_rate:
        result += rng.choice([-3, -2, -1, 1, 2, 3])
        *body, last = problem.solution.split(". ")
        last = last.rsplit("=", 1)[0] + f"= {result}."
        return ". ".join(body + [last]) + f" The answer is {result}."
    return f"{problem.solution} The answer is {result}."


@torch.inference_mode()
def generate_answers(
    model: Any, tokenizer: Any, questions: Sequence[str], *, max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy answers to one-turn chats, generated in left-padded batches."""
    tokenizer.padding_side = "left"
    answers = []
    for start in range(0, len(questions), batch_size):
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in questions[start : start + batch_size]
        ]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
        answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return answers


def forced(target: str) -> Answered:
    """A routing record for a call forced to ``target`` (the benchmark decides who answers, not a router)."""
    return Answered(
        RouteDecision(target, None, None, "kwarg:route", target),
        target,
        None,
        (DEFAULT_SMALL_MODEL, "scripted-teacher"),
    )


def log_heldout(path: Path, test: Sequence[Problem], student: Sequence[str], teacher: Sequence[str]) -> None:
    """Student answers as the user's calls, the teacher's as their shadow answers (pairs for the scorers)."""
    with RoutingLog(path, shadow_rate=1.0, source="benchmark") as log:
        for problem, mine, theirs in zip(test, student, teacher):
            call_id = log.log_call(problem.question, forced("small"), mine)
            log.maybe_shadow(call_id, problem.question, forced("small"), lambda t=theirs: (t, None, None)).result()


def grade(
    path: Path, test: Sequence[Problem], refs: dict[str, str], embed: EmbedScorer, seen: set[int]
) -> dict[str, Any]:
    """Match accuracy (seen/unseen templates) and embed similarity of the student's held-out answers."""
    score_log(path, MatchScorer(refs))
    score_log(path, embed)
    template = {p.question: p.template for p in test}
    small = {c["call_id"]: c for c in read_calls(path) if c["answered_by"] == "small"}
    match = {r["call_id"]: r["score"] for r in read_scores(path, "match") if r["call_id"] in small}
    sims = [r["score"] for r in read_scores(path, "embed") if r["call_id"] in small]

    def acc(select) -> tuple[float, int]:
        values = [v for cid, v in match.items() if select(template[small[cid]["query"]])]
        return (sum(values) / len(values) if values else float("nan")), len(values)

    return {
        "all": acc(lambda t: True),
        "seen": acc(lambda t: t in seen),
        "unseen": acc(lambda t: t not in seen),
        "similarity": sum(sims) / len(sims),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=192, help="teacher examples logged for training")
    parser.add_argument("--test", type=int, default=36, help="held-out queries")
    parser.add_argument("--unseen-templates", type=int, default=2, help="templates only in the held-out set")
    parser.add_argument("--slip-rate", type=float, default=0.15, help="share of teacher answers with a wrong result")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3 LoRA, 3e-5 full)")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--max-new-tokens", type=int, default=56)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep the logs, data and model here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hybrid-llm-distill-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    train, test = make_problems(args.train, args.test, args.unseen_templates, args.seed)
    seen = set(range(N_TEMPLATES - args.unseen_templates))
    rng = random.Random(args.seed + 1)
    teacher_train = [teacher_answer(p, rng, args.slip_rate) for p in train]
    teacher_test = [teacher_answer(p, random.Random(0), 0.0) for p in test]
    refs_path = work / "references.csv"
    with open(refs_path, "w", newline="") as fh:
        csv.writer(fh).writerows([("query", "reference"), *((p.question, p.answer) for p in train + test)])
    refs = load_references(refs_path)

    # 1. traffic: the training queries were answered by the large model (the teacher)
    train_log = work / "train_log.db"
    with RoutingLog(train_log, source="benchmark") as log:
        for problem, answer in zip(train, teacher_train):
            log.log_call(problem.question, forced("large"), answer)
    summary = score_log(train_log, MatchScorer(refs))
    sft_path = work / "sft.jsonl"
    kept = export_sft(train_log, sft_path, min_score=1.0, scorer="match")
    print(
        f"teacher: scripted solver; {len(train)} answers logged, {summary.scored} graded, {kept} kept by "
        f"export-sft --min-score 1 ({len(train) - kept} with a slip rejected)"
    )

    # 2. the student before distillation, on the held-out queries
    embed = EmbedScorer()
    model, tokenizer = load_small_model(DEFAULT_SMALL_MODEL)
    t0 = time.perf_counter()
    before = generate_answers(model, tokenizer, [p.question for p in test], max_new_tokens=args.max_new_tokens)
    gen_s = time.perf_counter() - t0
    log_heldout(work / "before.db", test, before, teacher_test)
    rows = [("SmolLM2-135M (shipped)", grade(work / "before.db", test, refs, embed, seen), "-", gen_s)]

    # 3. distill on the filtered teacher answers, then the held-out queries again
    lr = args.lr if args.lr is not None else (3e-5 if args.full else 1e-3)
    config = DistillConfig(
        steps=args.steps, batch_size=args.batch_size, lr=lr, lora=not args.full, max_length=256, seed=args.seed
    )
    result = distill(
        read_sft_jsonl(sft_path),
        work / "distilled",
        config=config,
        on_step=lambda s, l: (
            print(f"  step {s}/{args.steps} loss {l:.3f}", flush=True) if s == 1 or s % 10 == 0 else None
        ),
    )
    tuned, tuned_tok = load_small_model(str(work / "distilled"), cache=False)
    t0 = time.perf_counter()
    after = generate_answers(tuned, tuned_tok, [p.question for p in test], max_new_tokens=args.max_new_tokens)
    gen_s = time.perf_counter() - t0
    log_heldout(work / "after.db", test, after, teacher_test)
    kind = ("full FT" if args.full else f"LoRA r={config.lora_r}") + f", lr {lr:g}"
    rows.append(
        (
            f"distilled ({kind}, {args.steps} steps x {args.batch_size})",
            grade(work / "after.db", test, refs, embed, seen),
            f"{result.seconds:.0f}",
            gen_s,
        )
    )

    n_seen, n_unseen = rows[0][1]["seen"][1], rows[0][1]["unseen"][1]
    print(
        f"\nheld-out: {len(test)} queries ({n_seen} seen templates, {n_unseen} unseen); teacher accuracy on them 100%"
    )
    print(
        f"| model | match acc. all | seen templates | unseen templates | similarity to teacher | train s | "
        f"answer s ({len(test)} q) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, g, train_s, answer_s in rows:
        print(
            f"| {name} | {g['all'][0]:.1%} | {g['seen'][0]:.1%} | {g['unseen'][0]:.1%} | {g['similarity']:.3f} | "
            f"{train_s} | {answer_s:.0f} |"
        )
    print(
        f"\nfirst held-out query: {test[0].question}\n  teacher: {teacher_test[0]}\n  before:  {before[0]!r}\n"
        f"  after:   {after[0]!r}"
    )
    print(
        f"trainable parameters {result.trainable_params:,}; final loss {result.losses[-1]:.3f} (first "
        f"{result.losses[0]:.3f}); total {time.perf_counter() - started:.0f} s wall, {time.process_time():.0f} s CPU "
        f"(load average now {os.getloadavg()[0]:.1f}); files in {work}"
    )


if __name__ == "__main__":
    main()
