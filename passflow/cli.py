"""The `passflow` command line."""

from __future__ import annotations

import argparse
import sys


def _simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from simulator import SimConfig, create_app

    app = create_app(SimConfig.load(args.config))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from passflow.demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="passflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulator", help="serve the bundled Adobe Pass simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument("--config", help="fixtures TOML file (default: the bundled fixtures)")
    sim.add_argument("--log-level", default="info")
    sim.set_defaults(func=_simulator)

    demo = commands.add_parser("demo", help="run the main job on embedded defaults")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
