"""`chat seed` and `chat bench SCENARIO` (also `python -m bench ...`): the parsers and
what each runs. `chat.cli` hands these commands here without importing this package
for any other command, and `chat seed` imports nothing beyond the runtime."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from chat.settings import Settings


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def seed(args: argparse.Namespace) -> int:
    from bench.seed import seed

    asyncio.run(
        seed(
            Settings.from_env().database_url,
            rooms=args.rooms,
            users=args.users,
            messages=args.messages,
            rng_seed=args.seed,
        )
    )
    return 0


def live_scenarios() -> dict:  # name -> bench.report.Scenario
    from bench import capacity, http, live

    return {**live.SCENARIOS, "http": http.SCENARIO, "capacity": capacity.SCENARIO}


def run_bench(args: argparse.Namespace) -> int:
    from bench import in_process, live, report

    if args.broker is None:  # several workers share their messages through Redis
        wide = args.backend == "postgres" or max(args.workers) > 1
        args.broker = "redis" if wide else "memory"
    scenarios = live_scenarios()
    if args.scenario in scenarios:
        live.defaults(args.scenario, args)
        result = report.run(args.scenario, scenarios[args.scenario], args)
        return 1 if result.get("problems") else 0
    if args.scenario == "cost":
        from bench import cost

        cost.main(username=args.user, requests=args.requests, rounds=args.rounds)
        return 0
    in_process.main(args.scenario, username=args.user, requests=args.requests)
    return 0


def add_seed_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "seed", help="fill a migrated database with realistic chat history (demos, benchmarks)"
    )
    parser.add_argument("--rooms", type=_positive, default=20)
    parser.add_argument("--users", type=_positive, default=200)
    parser.add_argument("--messages", type=_positive, default=100_000)
    parser.add_argument("--seed", type=int, default=0, help="random seed (same data)")
    parser.set_defaults(run=seed)


def add_bench_parser(commands: argparse._SubParsersAction) -> None:
    from bench import capacity, http, in_process, live

    scenarios = {
        **{name: about for name, (about, _) in in_process.SCENARIOS.items()},
        **{name: scenario.about for name, scenario in live_scenarios().items()},
        "cost": "CPU per request of chat bench http's rows in process, fast and plain paths",
    }
    parser = commands.add_parser("bench", help="measure a scenario")
    parser.add_argument(
        "scenario",
        choices=sorted(scenarios),
        help="; ".join(f"{name}: {about}" for name, about in sorted(scenarios.items())),
    )
    group = parser.add_argument_group("in-process scenarios (history, search, cost)")
    group.add_argument("--requests", type=_positive, default=200, help="per measurement")
    group.add_argument("--user", default="user00001", help="a seeded account")
    group = parser.add_argument_group("every live-server scenario")
    group.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    group.add_argument(
        "--broker",
        choices=["memory", "redis"],
        help="default: memory with sqlite and one worker, redis otherwise",
    )
    group.add_argument(
        "--workers",
        type=_positive,
        nargs="+",
        default=[1],
        help="`chat serve --workers N`; several counts take turns (http, fanout, posts)",
    )
    group.add_argument("--seconds", type=float, default=10.0, help="per round or step")
    group.add_argument("--rounds", type=int, default=3, help="turns each")
    group.add_argument("--output", type=Path, default=Path("bench-results"))
    live.add_arguments(parser)
    http.add_arguments(parser)
    capacity.add_arguments(parser)
    parser.set_defaults(run=run_bench)


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> None:
    """`chat seed ...` and `chat bench ...` arrive here with their whole argv."""
    parser = argparse.ArgumentParser(prog=prog, description="Seed data and benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_seed_parser(commands)
    add_bench_parser(commands)
    args = parser.parse_args(argv)
    sys.exit(args.run(args))
