#!/usr/bin/python3
"""Draws the results of `moe-ep bench --json FILE`: latency and bandwidth against tokens per rank, one line
per system (and rank count and quantization when the sweep has several), dispatch solid, combine dashed, and
a memcpy of the bytes dispatch received as the yardstick of bandwidth.

usage: scripts/plot_bench.py RESULTS.json OUT.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display: write the file only
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    with open(argv[1]) as f:
        bench = json.load(f)
    measured = [r for r in bench["results"] if "dispatch" in r]
    if not measured:
        sys.exit(f"{argv[1]}: no measured results to draw")
    several_ranks = len({r["ranks"] for r in measured}) > 1
    several_quant = len({r["quant"] for r in measured}) > 1

    def label(r):
        text = r["system"]
        if several_ranks:
            text += f", {r['ranks']} ranks"
        if several_quant:
            text += ", int8" if r["quant"] else ", bf16"
        return text

    lines = {}
    for r in measured:
        lines.setdefault(label(r), []).append(r)
    fig, (latency, bandwidth) = plt.subplots(1, 2, figsize=(13, 5))
    for index, (name, rows) in enumerate(sorted(lines.items())):
        rows.sort(key=lambda r: r["tokens"])
        tokens = [r["tokens"] for r in rows]
        color = f"C{index}"
        for op, style in (("dispatch", "-"), ("combine", "--")):
            latency.plot(tokens, [r[op]["median_us"] for r in rows], style, color=color, marker="o", markersize=3,
                         label=f"{name} {op}")
            bandwidth.plot(tokens, [r[op]["gb_per_s"] for r in rows], style, color=color, marker="o", markersize=3,
                           label=f"{name} {op}")
    # The yardstick: a memcpy of the bytes dispatch received, on every rank at once, in the threads run (or the
    # first system's).
    yardstick = next((name for name in sorted(lines) if name.startswith("threads")), sorted(lines)[0])
    rows = lines[yardstick]
    bandwidth.plot([r["tokens"] for r in rows], [r["dispatch"]["bytes"] / r["dispatch"]["memcpy_us"] / 1e3 for r in rows],
                   ":", color="gray", label=f"memcpy of the same bytes ({yardstick} run)")
    bandwidth.legend(fontsize=7)
    c = bench["config"]
    ranks = ", ".join(str(n) for n in sorted({r["ranks"] for r in measured}))
    fig.suptitle(f"moe_ep dispatch / combine: {ranks} ranks, H {c['hidden']}, top-{c['top_k']} of {c['experts']} "
                 f"experts, bf16 tokens; {c['cores']} cores, medians of {c['repeats']} rounds")
    latency.set(xscale="log", yscale="log", xlabel="tokens per rank", ylabel="latency (us)", title="latency")
    bandwidth.set(xscale="log", xlabel="tokens per rank", ylabel="GB/s (rows received x row bytes, all ranks)",
                  title="bandwidth")
    for axes in (latency, bandwidth):
        axes.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    print(f"wrote {argv[2]}")


if __name__ == "__main__":
    main(sys.argv)
