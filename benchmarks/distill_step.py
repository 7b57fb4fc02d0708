"""Seconds and peak memory of a distillation step on SmolLM2-135M-Instruct, in the same
run: the distillation loss written with autograd's own operations (`autograd`) and as
modelpress computes it (`sliced`, compress.kd_loss), in fp32; and, on a CPU that
multiplies bf16 natively (AVX512-BF16 or AMX), the sliced loss under bf16 autocast with
a bf16 teacher, which modelpress then chooses (compress.distill.computes_bf16).

    python benchmarks/distill_step.py --json results/distill-step.json
    python benchmarks/distill_step.py --mode scales --steps 6 --repeats 3

Modes: `scales` is the local example's `slim` distillation (a W4A16 g64 student, here
rounded to nearest, whose scales and norms train; batch 2 x 256, T = 1); `full` trains
a 24-of-30-layer student's every weight but the embedding (batch 4 x 256, T = 2). Each
measurement runs in a fresh process, alternating the losses, so that peak RSS is the
step's own. A step's seconds are the median of the steps after the first. The text is
license text (examples/data/calib.txt). The final losses of the two must agree: the same
training, computed two ways.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "benchmarks"))

LOSSES = ("autograd", "sliced")
#: (loss, precision) pairs measured; the first is the reference of the speed-ups.
RUNS = (("autograd", "fp32"), ("sliced", "fp32"), ("sliced", "bf16"))
MODES = {
    "scales": {"batch_size": 2, "temperature": 1.0, "learning_rate": 1e-3},
    "full": {"batch_size": 4, "temperature": 2.0, "learning_rate": 2e-4, "student_layers": 24},
}
SEQUENCE = 256
WINDOWS = 32


def autograd_kd_loss(student: Any, teacher: Any, temperature: float) -> Any:
    """The loss as PyTorch's documentation writes it: log-softmaxes and `kl_div`."""
    import torch.nn.functional as F

    vocab = student.shape[-1]
    log_q = F.log_softmax(student.reshape(-1, vocab).float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher.reshape(-1, vocab).float() / temperature, dim=-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean") * temperature**2


def one_run(loss: str, precision: str, mode: str, steps: int, base_files: Path) -> dict[str, Any]:
    """One process's measurement (this process must be fresh)."""
    import os

    import torch

    import modelpress.compress.distill as distilling
    from modelpress.api.steps import DistillStep, QuantizeStep
    from modelpress.compress.checkpoint import load_model, load_tokenizer
    from modelpress.compress.quantize import quantize
    from modelpress.compress.scale_tuning import scales_tuned_if_quantized
    from modelpress.compress.text import read_text, tokenize, windows

    torch.set_num_threads(2)
    os.environ[distilling.PRECISION_VARIABLE] = precision
    if loss == "autograd":
        distilling.kd_loss = autograd_kd_loss
    text = read_text(f"file://{REPO / 'examples' / 'data' / 'calib.txt'}")
    data = windows(tokenize(load_tokenizer(base_files), text), WINDOWS, SEQUENCE, what="calib")
    teacher = load_model(base_files).float()
    settings = dict(MODES[mode])
    if mode == "scales":
        student = load_model(base_files).float()
        scheme = QuantizeStep.model_validate(
            {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 64}
        )
        quantize(student, scheme, None, base_parameters=0, dtype_bytes=2)
    else:
        student = distilling.build_student(teacher, settings["student_layers"])
    step = DistillStep.model_validate(
        {
            "steps": steps,
            "batchSize": settings["batch_size"],
            "temperature": settings["temperature"],
            "learningRate": settings["learning_rate"],
        }
    )
    times: list[float] = []
    original_step = torch.optim.AdamW.step

    def timed_step(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_step(self, *args, **kwargs)
        times.append(time.monotonic())
        return result

    torch.optim.AdamW.step = timed_step  # type: ignore[method-assign]
    started = time.monotonic()
    with scales_tuned_if_quantized(student, torch.bfloat16):
        details = distilling.distill(student, teacher, step, data)
    ends = [started, *times]
    seconds = [after - before for before, after in itertools.pairwise(ends)]
    return {
        "loss": loss,
        "precision": details["precision"],
        "mode": mode,
        "first_step_s": round(seconds[0], 3),
        "step_s": round(statistics.median(seconds[1:]), 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
        "final_loss": details["finalLoss"],
    }


def base_model(work: Path) -> Path:
    """The compression benchmark's base model, converted from the GGUF once."""
    import compression as bench
    from modelpress.storage import fetch

    files = work / "base-files"
    if not files.is_dir():
        fetch(bench.prepare_base(f"file://{work}/store/"), files)
    return files


def summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (mode, loss, precision): medians over the repeats, and the speed-up
    over the first of RUNS."""
    rows = []
    for mode in dict.fromkeys(run["mode"] for run in runs):
        measured = [run for run in runs if run["mode"] == mode]
        groups = {
            (loss, precision): [
                r for r in measured if (r["loss"], r["precision"]) == (loss, precision)
            ]
            for loss, precision in RUNS
        }
        reference = statistics.median(run["step_s"] for run in groups[RUNS[0]])
        for (loss, precision), mine in groups.items():
            if not mine:
                continue
            step_s = statistics.median(run["step_s"] for run in mine)
            rows.append(
                {
                    "mode": mode,
                    "loss": loss,
                    "precision": precision,
                    "step_s": round(step_s, 3),
                    "speedup": round(reference / step_s, 2),
                    "peak_rss_gb": max(run["peak_rss_gb"] for run in mine),
                    "final_loss": sorted({run["final_loss"] for run in mine}),
                    "runs": len(mine),
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'mode':<7} {'loss':<9} {'prec.':<5} {'s/step':>7} {'speedup':>8} {'peak RSS':>9}  final loss"
    )
    for row in rows:
        losses = ", ".join(f"{value:.6f}" for value in row["final_loss"])
        print(
            f"{row['mode']:<7} {row['loss']:<9} {row['precision']:<5} {row['step_s']:>7.3f} "
            f"{row['speedup']:>7.2f}x {row['peak_rss_gb']:>6.2f} GB  {losses}"
        )


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the runs and the table here")
    parser.add_argument("--work-dir", type=Path, default=REPO / "results" / "compression-bench")
    parser.add_argument("--mode", choices=sorted(MODES), action="append")
    parser.add_argument("--steps", type=int, default=6, help="distillation steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per loss, alternating")
    parser.add_argument("--child", nargs=2, metavar=("LOSS", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    base_files = base_model(args.work_dir.resolve())
    if args.child:
        loss, precision = args.child
        print(json.dumps(one_run(loss, precision, args.mode[0], args.steps, base_files)))
        return 0
    import torch

    from modelpress.compress.distill import computes_bf16

    native = computes_bf16(torch.device("cpu"))
    chosen = [run for run in RUNS if native or run[1] == "fp32"]
    if not native:
        print("this CPU emulates bf16 (no AVX512-BF16 or AMX): fp32 only, as modelpress trains")
    runs = []
    for mode in args.mode or ["scales", "full"]:
        for repeat in range(args.repeats):
            for loss, precision in chosen:
                command = [sys.executable, __file__, "--child", loss, precision, "--mode", mode]
                command += ["--steps", str(args.steps), "--work-dir", str(args.work_dir)]
                print(f"{mode} {loss} {precision} run {repeat + 1}/{args.repeats} ...", flush=True)
                done = subprocess.run(command, check=True, capture_output=True, text=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"  {runs[-1]}", flush=True)
    rows = summary(runs)
    print(f"CPU: {cpu_name()}, {torch.backends.cpu.get_cpu_capability()}, 2 threads")
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"cpu": cpu_name(), "bf16_native": native, "runs": runs, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
