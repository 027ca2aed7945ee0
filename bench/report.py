"""Running a live-server scenario and reporting it: a table on stdout, a JSON file and a
plot under --output (bench-results/), with the machine's load and a reference timing
beside the figures, so absolute numbers from different days can be compared."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.driver import log
from bench.servers import pin

Result = dict[str, object]


@dataclass(frozen=True)
class Scenario:
    """A live-server benchmark: what it measures, and how its result is shown."""

    about: str
    measure: Callable[[object], Awaitable[Result]]  # parsed options -> result
    table: Callable[[Result], Iterator[str]]
    plot: Callable[[Result, object], None]  # (result, matplotlib Axes)


def app_name(workers: int) -> str:
    """The app's name in a result: `app`, or `app-2w` with two workers."""
    return "app" if workers == 1 else f"app-{workers}w"


def _ratio(app: float, baseline: float, higher_is_better: bool) -> str:
    if not app or not baseline or math.isnan(app) or math.isnan(baseline):
        return "-"
    ratio = app / baseline if higher_is_better else baseline / app
    return f"{ratio:.2f}x"


def baselines_table(result: Result) -> Iterator[str]:
    """fanout and small-rooms: latencies, deliveries, and the ratios to the baselines."""
    rows = [
        ("p50 ms", "p50_ms", False),
        ("p99 ms", "p99_ms", False),
        ("max ms", "max_ms", False),
        ("p50 ms, read", "read_p50_ms", False),
        ("p99 ms, read", "read_p99_ms", False),
        ("delivered", "delivered", None),
        ("expected", "expected", None),
        ("server CPU s", "server_cpu_s", None),
    ]
    if "deliveries_per_cpu_s" in result["app"]:
        rows += [
            ("driver CPU s", "driver_cpu_s", None),
            ("PostgreSQL+Redis CPU s", "postgres_redis_cpu_s", None),
            ("deliveries / CPU-s", "deliveries_per_cpu_s", True),
        ]
    yield from _beside_baselines(result, rows)
    if "deliveries_per_cpu_s" in result["app"]:
        yield from fanout_bound(result)


def two_core_bound(one: dict[str, float], more: dict[str, float]) -> float:
    """How many times one worker's rate N workers can reach on this 2-core machine, from
    CPU per operation ({"server": ..., anything else: ...}) of each: one worker pinned to
    a core does 1 / w1 a second (everything else fits on the other core while o1 < w1);
    all of them together can do no more than 2 / (w + o) of the N workers' (bench/shared_cpu.py)."""
    w1, o1 = one["server"], sum(v for k, v in one.items() if k != "server")
    total = sum(more.values())
    if not w1 or not total:
        return math.nan
    return 2 / total / min(1 / w1, 2 / (w1 + o1))


def fanout_bound(result: Result) -> Iterator[str]:
    """Per delivery, each app's CPU and its driver's; the two-core bound of more workers."""
    apps = {name: figures for name, figures in result.items() if name.startswith("app")}

    def per_delivery(figures: dict[str, float]) -> dict[str, float]:
        delivered = max(figures["delivered"], 1)
        return {
            "server": figures["server_cpu_s"] / delivered,
            "driver": figures["driver_cpu_s"] / delivered,
            "shared": figures.get("postgres_redis_cpu_s", 0.0) / delivered,
        }

    costs = {name: per_delivery(figures) for name, figures in apps.items()}
    for name, cost in costs.items():
        yield (
            f"{name}: CPU µs per delivery: server {cost['server'] * 1e6:.1f}, "
            f"driver {cost['driver'] * 1e6:.1f}, PostgreSQL+Redis {cost['shared'] * 1e6:.2f}"
        )
    if "app" in costs:
        for name, cost in costs.items():
            if name != "app":
                bound = two_core_bound(costs["app"], cost)
                yield f"{name}: at most {bound:.2f}x app's deliveries/s on 2 cores at these costs"


def cost_per_op(step: dict[str, float], count: float) -> dict[str, float]:
    """CPU-seconds per operation of the server, PostgreSQL, Redis and the driver."""
    count = max(count, 1)
    return {
        "server": step["server_cpu_s"] / count,
        "postgres": step.get("postgres_cpu_s", 0.0) / count,
        "redis": step.get("redis_cpu_s", 0.0) / count,
        "driver": step.get("driver_cpu_s", 0.0) / count,
    }


def posts_table(result: Result) -> Iterator[str]:
    costs = {}
    for target, figures in result["targets"].items():
        yield f"{target}:"
        yield (
            f"{'offered/s':>10} {'achieved/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}"
            "   CPU µs per post: server  PostgreSQL  Redis  driver"
        )
        for step in figures["steps"]:
            cost = cost_per_op(step, step["answered"])
            yield (
                f"{step['offered_per_s']:10,.0f} {step['achieved_per_s']:11,.0f} "
                f"{step['p50_ms']:8.1f} {step['p99_ms']:8.1f} {step['failed']:7}"
                f"{'':20}{cost['server'] * 1e6:7,.0f} {cost['postgres'] * 1e6:11,.0f} "
                f"{cost['redis'] * 1e6:6,.0f} {cost['driver'] * 1e6:7,.0f}"
                f"{'' if step['sustained'] else '  <- p99 over limit or failures'}"
            )
        sustained = [step for step in figures["steps"] if step["sustained"]]
        if sustained:  # the busiest step that held: the costs nearest to the limit
            busiest = max(sustained, key=lambda step: step["offered_per_s"])
            costs[target] = cost_per_op(busiest, busiest["answered"])
        yield (
            f"max sustained: {figures['max_sustained_posts_per_s']:,.0f} posts/s "
            f"(p99 < {result['p99_limit_ms']:.0f} ms)"
        )
    if "app" in costs:
        for name, cost in costs.items():
            if name != "app":
                bound = two_core_bound(costs["app"], cost)
                yield f"{name}: at most {bound:.2f}x app's posts/s on 2 cores at these costs"


def idle_table(result: Result) -> Iterator[str]:
    rows = [
        ("open streams", "streams", None),
        ("errors", "errors", None),
        ("RSS before KiB", "rss_before_kib", None),
        ("RSS after KiB", "rss_after_kib", None),
        ("KiB per stream", "kib_per_stream", False),
    ]
    yield from _beside_baselines(result, rows)


def _beside_baselines(
    result: dict[str, object], rows: list[tuple[str, str, bool | None]]
) -> Iterator[str]:
    """The app's figures, each other target's (baselines, more workers), and the ratio to
    each (>1: the app is better)."""
    others = [
        name
        for name, value in result.items()
        if name not in ("app", "machine", "options")
        and isinstance(value, dict)
        and rows[0][1] in value
    ]
    yield f"{'':20} {'app':>12}" + "".join(f" {name:>12} {'ratio':>8}" for name in others)
    app = result["app"]
    for label, key, higher in rows:
        line = f"{label:20} {app[key]:12,.1f}"
        for name in others:
            value = result[name][key]
            ratio = "" if higher is None else _ratio(app[key], value, higher)
            line += f" {value:12,.1f} {ratio:>8}"
        yield line
    if isinstance(result.get("socketio"), str):
        yield f"socket.io: {result['socketio']}"


def posts_plot(result: Result, axes) -> None:
    for target, figures in result["targets"].items():
        steps = figures["steps"]
        rates = [step["offered_per_s"] for step in steps]
        for key in ("p50_ms", "p99_ms"):
            axes.plot(rates, [step[key] for step in steps], marker="o", label=f"{target} {key[:3]}")
    axes.axhline(result["p99_limit_ms"], linestyle="--", color="grey", label="limit")
    axes.set_xlabel("offered posts/s")
    axes.set_ylabel("post latency, ms (from intended send time)")
    axes.legend()


def idle_plot(result: Result, axes) -> None:
    measured = ("app", "baseline", "socketio")
    labels = [label for label in measured if isinstance(result[label], dict)]
    axes.bar(labels, [result[label]["kib_per_stream"] for label in labels])
    axes.set_ylabel("server RSS per idle stream, KiB")  # the bars are named on their axis


def latency_plot(result: Result, axes) -> None:
    for label, latencies in result["latencies_ms"].items():
        if latencies:
            ordered = sorted(latencies)
            fractions = [100 * (n + 1) / len(ordered) for n in range(len(ordered))]
            axes.plot(fractions, ordered, label=label)
    axes.set_xlabel("percentile")
    axes.set_ylabel("post→receive latency, ms (from intended send time)")
    axes.set_yscale("log")
    axes.legend()


def reference_us() -> float:
    """`python -m timeit "sum(range(1000))"` (best of five), in microseconds: how fast
    this machine runs Python right now, to set beside absolute figures."""
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "sum_range_1000_us": reference_us(),
    }


def run(name: str, scenario: Scenario, options) -> Result:
    """Measures `scenario` with the driver on core 1 and writes its table, JSON and plot."""
    from chat.cli import raise_fd_limit

    limit = raise_fd_limit()  # the servers inherit it
    pin(0, {1})
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    log(f"chat bench {name}: {options.backend}, broker {options.broker}, fd limit {limit:,}")
    load_before = os.getloadavg()
    result = runner(scenario.measure(options))
    result["machine"] = {**machine(), "load_average_before": load_before}
    result["options"] = {key: str(value) for key, value in vars(options).items() if key != "run"}
    for line in scenario.table(result):
        print(line)
    print(
        f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f'python -m timeit "sum(range(1000))": {result["machine"]["sum_range_1000_us"]:.1f} usec'
    )
    options.output.mkdir(parents=True, exist_ok=True)
    stem = options.output / f"{name}-{options.backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    plot(name, scenario, result, stem.with_suffix(".png"))
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {stem}.json and {stem}.png")
    return result


def plot(name: str, scenario: Scenario, result: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5))
    scenario.plot(result, axes)
    axes.set_title(f"chat bench {name}")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
