"""Published artifacts judged on text from another domain than the license text their
steps learned from: this project's documentation (examples/data/eval-docs.txt), with
the perplexity increase and KL divergence to the base model, as the compression
benchmark judges its rows. A gate on calibration-like text flatters what learned it.

    python benchmarks/other_domain.py --base /var/tmp/modelpress/models/smollm2-135m-instruct \
        file:///var/tmp/modelpress/store/artifacts/<key>/ ... --json results/local-other.json

(`scripts/setup-local` prints the local example's artifact URIs.) Windows: 8 of 256
tokens, the local example's evaluation shape.
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
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)

    import compression as bench
    from modelpress.storage import fetch

    evaluation = bench.OUT_OF_DOMAIN | {
        "samples": args.samples,
        "sequenceLength": args.sequence_length,
    }
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, uri in enumerate(args.artifacts):
            files = Path(scratch) / str(index)
            fetch(uri, files)  # every file checked against the manifest's sha256
            found = bench.measure(args.base, files, evaluation, Path(scratch) / "cache")
            rows.append(
                {
                    "artifact": uri,
                    "perplexityIncrease": found["perplexityIncrease"],
                    "klDivergence": found["klDivergence"],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\nother domain: {evaluation['dataset']['uri']}, {args.samples} x "
          f"{args.sequence_length} tokens")  # fmt: skip
    print(f"{'artifact':<70} {'Δppl':>8} {'KLD':>7}")
    for row in rows:
        print(
            f"{row['artifact']:<70} {row['perplexityIncrease']:>+8.2%} {row['klDivergence']:>7.4f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"evaluation": evaluation, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
