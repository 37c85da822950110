"""Command line: ``python -m readout_core {demo,train,info,convert} ...``.

Only the parser is built at start-up; torch and the modules that need it load once a
command runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import HeadFileError, ReadoutError
from .heads.info import KINDS
from .training.cli import add_train_parser

if TYPE_CHECKING:
    from .heads.network import ReadoutHead

TINY_HEADS = "readout_core/tiny_world/weights"
"""Where the shipped tiny-world heads lie (relative to the pack folder): files to try `info` on."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 on a readout error)."""
    args = build_parser().parse_args(argv)
    try:
        from .cpu_threads import configure_torch_threads

        configure_torch_threads()
        if args.command == "demo":
            from .tiny_world.demo import run_demo

            print(run_demo(args.out, args.seed))
        elif args.command == "train":
            from .training.cli import run_train

            return run_train(args)
        elif args.command == "info":
            from .heads.files import load_head
            from .heads.network import count_parameters

            head = load_head(args.path)
            parameters = count_parameters(head)
            print(json.dumps(_summary(head, parameters), indent=2) if args.json else _describe(head, parameters))
        else:
            _convert(args.source, args.destination, args.kind, args.force)
    except ReadoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (needs no torch)."""
    parser = argparse.ArgumentParser(
        prog="python -m readout_core", description="Readout Guidance: demo, train, inspect and convert heads.",
        epilog="Torch uses one thread per idle CPU core this process may use; set OMP_NUM_THREADS to choose.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser("demo", help="readout guidance on the tiny world (CPU, no downloads)")
    demo_cmd.add_argument("--out", default="readout_demo.png", help="where to write the image grid")
    demo_cmd.add_argument("--seed", type=int, default=0, help="which samples to generate (default 0)")
    add_train_parser(commands)
    info_cmd = commands.add_parser("info", help="print what a head file is",
                                   epilog=f"Try it on a shipped head: {TINY_HEADS}/tiny_depth.safetensors")
    info_cmd.add_argument("path", help="a published .pt head or a pack .safetensors head")
    info_cmd.add_argument("--json", action="store_true", help="print machine-readable JSON")
    convert_cmd = commands.add_parser("convert", help="convert a published .pt head to .safetensors")
    convert_cmd.add_argument("source", help="published .pt head")
    convert_cmd.add_argument("destination", help="output .safetensors path")
    convert_cmd.add_argument("--kind", choices=KINDS, help="override the head kind if the file name does not tell")
    convert_cmd.add_argument("--force", action="store_true", help="overwrite the destination if it exists")
    return parser


def _convert(source: str, destination: str, kind: str | None, force: bool) -> None:
    from .heads.files import convert_published_head
    from .heads.network import count_parameters

    if Path(destination).exists() and not force:
        raise HeadFileError(f"{destination} already exists; add --force to overwrite it, or choose another name.")
    head = convert_published_head(source, destination, kind=kind)
    print(f"wrote {destination}: {head.info.describe()}, {count_parameters(head):,} parameters")


def _summary(head: ReadoutHead, parameters: int) -> dict:
    summary = asdict(head.info)
    summary["parameters"] = parameters
    summary["layers"] = len(head.info.dims)
    return summary


def _describe(head: ReadoutHead, parameters: int) -> str:
    info = head.info
    rows = [
        ("kind", info.kind),
        ("base model family", info.family + (f" ({info.base_model})" if info.base_model else "")),
        ("control type", info.control_type or "-"),
        ("control range", str(info.control_range) if info.control_range else "-"),
        ("layers", f"{len(info.dims)}: dims {list(info.dims)}"),
        ("projection dim", str(info.projection_dim)),
        ("timestep embedding", f"{info.emb_dim} wide" + (" (unused: sequential layout)" if info.sequential else "")),
        ("output", f"{info.output_channels} channels" + (", Tanh" if info.output_activation else "")
         if info.output_channels else f"{info.projection_dim}-channel feature map"),
        ("parameters", f"{parameters:,}"),
    ]
    if info.training:
        rows.append(("training", ", ".join(f"{k}={v}" for k, v in sorted(info.training.items()))))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


if __name__ == "__main__":
    sys.exit(main())
