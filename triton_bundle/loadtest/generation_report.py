"""The streaming part of a load-test report: a markdown table and one PNG (TTFT, ITL, tokens/s)."""

from __future__ import annotations

from matplotlib.figure import Figure

from triton_bundle.formatting import ms as _ms
from triton_bundle.formatting import number as _rate
from triton_bundle.loadtest.generation import GenerationSummary
from triton_bundle.loadtest.histograms import percentile
from triton_bundle.loadtest.slo import GateResult

_MAX_USER_ROWS = 16


def generation_markdown(gen: GenerationSummary) -> list[str]:
    lines = [
        "",
        "## Generation (streamed tokens)",
        "",
        "| streams | tokens | tokens/s (all) | tokens/s per stream p50 | min | TTFT p50 | p95 | p99 | "
        "ITL p50 | p95 | p99 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {gen.streams} | {gen.tokens} | {_rate(gen.tokens_per_s)} | {_rate(gen.stream_tokens_per_s_p50)} | "
        f"{_rate(gen.stream_tokens_per_s_min)} | {_ms(gen.ttft.p50_ms)} | {_ms(gen.ttft.p95_ms)} | "
        f"{_ms(gen.ttft.p99_ms)} | {_ms(gen.itl.p50_ms)} | {_ms(gen.itl.p95_ms)} | {_ms(gen.itl.p99_ms)} |",
        "",
        "TTFT: request sent to first token. ITL: gap between consecutive tokens of one stream. "
        "Tokens/s per stream: a stream's tokens over its whole latency.",
    ]
    if gen.user_tokens_per_s:
        users = sorted(gen.user_tokens_per_s.items(), key=lambda kv: kv[1])
        lines += ["", "| user | tokens/s over the run |", "|---|---:|"]
        shown = users if len(users) <= _MAX_USER_ROWS else users[: _MAX_USER_ROWS // 2] + users[-8:]
        lines += [f"| {user} | {rate:.1f} |" for user, rate in shown]
        if len(users) > len(shown):
            lines.append(f"| ({len(users) - len(shown)} more users between these) | |")
    lines += ["", "![generation](generation.png)", ""]
    return lines


def _histogram(ax, hist: dict[float, int], title: str, gate: GateResult, prefix: str) -> None:
    if not hist:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
    else:
        keys = sorted(hist)
        ax.hist(keys, bins=min(50, max(10, len(keys))), weights=[hist[k] for k in keys], color="steelblue")
        for q, style in ((0.50, ":"), (0.95, "--"), (0.99, "-.")):
            value = percentile(hist, q)
            if value is not None:
                ax.axvline(
                    value, color="black", linestyle=style, linewidth=1, label=f"p{int(q * 100)} {value:g}"
                )
        for check in gate.checks:
            if check.name.startswith(prefix) and check.threshold <= 1.5 * max(keys):
                ax.axvline(check.threshold, color="red", linewidth=1, label=f"SLO {check.name}")
        ax.legend(fontsize="x-small")
    ax.set_title(title)
    ax.set_xlabel("ms")


def plot_generation(gen: GenerationSummary, gate: GateResult, started_at: float) -> Figure:
    """TTFT and ITL distributions and output tokens per second over the run."""
    fig = Figure(figsize=(12, 4.2))
    ttft_ax, itl_ax, rate_ax = fig.subplots(1, 3)
    _histogram(ttft_ax, gen.ttft_histogram, "time to first token", gate, "ttft")
    _histogram(itl_ax, gen.itl_histogram, "inter-token latency", gate, "itl")
    if gen.tokens_by_second:
        seconds = sorted(gen.tokens_by_second)
        t = [s - started_at for s in seconds]
        rate_ax.plot(t, [gen.tokens_by_second[s] for s in seconds], marker=".", label="tokens/s")
        floor = next((c.threshold for c in gate.checks if c.name == "min_tokens_per_s"), None)
        if floor is not None:
            rate_ax.axhline(floor, color="red", linestyle="--", linewidth=1, label="SLO floor")
        rate_ax.legend(fontsize="x-small")
    else:
        rate_ax.text(0.5, 0.5, "no tokens", ha="center", va="center", transform=rate_ax.transAxes)
    rate_ax.set_title("output tokens per second")
    rate_ax.set_xlabel("seconds since start")
    fig.tight_layout()
    return fig
