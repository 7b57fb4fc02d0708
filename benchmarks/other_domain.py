"""Published artifacts judged on text from another domain than the license text their
steps learned from: this project's documentation (examples/data/eval-docs.txt), with
the perplexity increase and KL divergence to the base model, and accuracy on
multiple-choice questions made from that text as a share of the base model's (cloze),
as the compression benchmark judges its rows. A gate on calibration-like text flatters
what learned it.

    python benchmarks/other_domain.py --base /var/tmp/modelpress/models/smollm2-135m-instruct \
        file:///var/tmp/modelpress/store/artifacts/<key>/ ... --json results/local-other.json

(`scripts/setup-local` prints the local example's artifact URIs.) Windows: 8 of 256
tokens, the local example's evaluation shape. With `--chat PROMPTS.jsonl`, each
artifact is also judged on the base model's own answers to those prompts, as
`evaluation.chat` judges it (KL divergence and greedy agreement).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", help="artifact URIs (file://, s3://)")
    parser.add_argument("--base", type=Path, required=True, help="the base model's directory")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=256)
    parser.add_argument("--chat", type=Path, help='chat prompts, one {"prompt": ...} per line')
    parser.add_argument("--chat-tokens", type=int, default=48, help="longest base answer")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)

    import compression as bench
    from modelpress.api.spec import Chat
    from modelpress.compress.chat import read_chat
    from modelpress.storage import fetch

    chat = None
    if args.chat:
        wanted = {
            "prompts": {"uri": f"file://{args.chat.resolve()}"},
            "maxTokens": args.chat_tokens,
        }
        chat = read_chat(Chat.model_validate(wanted))

    evaluation = bench.OUT_OF_DOMAIN | {
        "samples": args.samples,
        "sequenceLength": args.sequence_length,
    }
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, uri in enumerate(args.artifacts):
            files = Path(scratch) / str(index)
            fetch(uri, files)  # every file checked against the manifest's sha256
            found = bench.measure(args.base, files, evaluation, Path(scratch) / "cache", chat)
            rows.append(
                {
                    "artifact": uri,
                    "perplexityIncrease": found["perplexityIncrease"],
                    "klDivergence": found["klDivergence"],
                    "tasks": found.get("tasks") or [],
                }
                | ({"chat": found["chat"]} if chat else {})
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\nother domain: {evaluation['dataset']['uri']}, {args.samples} x "
          f"{args.sequence_length} tokens")  # fmt: skip
    if chat:
        print(f"chat: {len(chat.prompts)} prompts of {args.chat}, answers of at most "
              f"{chat.max_tokens} tokens")  # fmt: skip
    print(
        f"{'artifact':<70} {'Δppl':>8} {'KLD':>7} {'cloze':>6}"
        + (f" {'chat KLD':>9} {'agree':>6}" if chat else "")
    )
    for row in rows:
        line = (
            f"{row['artifact']:<70} {row['perplexityIncrease']:>+8.2%} {row['klDivergence']:>7.4f}"
            f" {bench._cloze(row):>6}"
        )
        if chat:
            line += f" {row['chat']['klDivergence']:>9.4f} {row['chat']['agreement']:>6.1%}"
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        chat_used = {"prompts": str(args.chat), "maxTokens": args.chat_tokens} if chat else None
        document = {"evaluation": evaluation, "chat": chat_used, "rows": rows}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
