"""`chat seed` and `chat bench SCENARIO` (also `python -m bench ...`): the parsers and
what each runs. `chat.cli` hands these commands here without importing this package
for any other command."""

from __future__ import annotations

import argparse
import asyncio
import sys

from chat.settings import Settings


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def seed(args: argparse.Namespace) -> int:
    from bench import in_process

    asyncio.run(
        in_process.seed(
            Settings.from_env().database_url,
            rooms=args.rooms,
            users=args.users,
            messages=args.messages,
            rng_seed=args.seed,
        )
    )
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from bench import in_process, load

    if args.scenario in load.SCENARIOS:
        load.main(args.scenario, args)
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
    from bench import in_process, load

    scenarios = {**in_process.SCENARIOS, **load.SCENARIOS}
    parser = commands.add_parser("bench", help="measure a scenario")
    parser.add_argument(
        "scenario",
        choices=sorted(scenarios),
        help="; ".join(f"{name}: {about}" for name, (about, _) in sorted(scenarios.items())),
    )
    parser.add_argument("--requests", type=_positive, default=200, help="per measurement")
    parser.add_argument("--user", default="user00001", help="a seeded account")
    load.add_arguments(parser)
    parser.set_defaults(run=run_bench)


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> None:
    """`chat seed ...` and `chat bench ...` arrive here with their whole argv."""
    parser = argparse.ArgumentParser(prog=prog, description="Seed data and benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_seed_parser(commands)
    add_bench_parser(commands)
    args = parser.parse_args(argv)
    sys.exit(args.run(args))
