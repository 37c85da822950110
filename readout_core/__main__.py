"""Command line: ``python -m readout_core {demo,train,info,convert} ...``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Sequence

from .errors import ReadoutError
from .head_files import convert_published_head, load_head
from .head_info import KINDS
from .heads import ReadoutHead, count_parameters
from .train_cli import add_train_parser, run_train


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 on a readout error)."""
    parser = argparse.ArgumentParser(prog="python -m readout_core",
                                     description="Readout Guidance: demo, train, inspect and convert heads.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser("demo", help="readout guidance on the tiny world (CPU, no downloads)")
    demo_cmd.add_argument("--out", default="readout_demo.png", help="where to write the image grid")
    demo_cmd.add_argument("--seed", type=int, default=0)
    add_train_parser(commands)
    info_cmd = commands.add_parser("info", help="print what a head file is")
    info_cmd.add_argument("path", help="a published .pt head or a pack .safetensors head")
    info_cmd.add_argument("--json", action="store_true", help="print machine-readable JSON")
    convert_cmd = commands.add_parser("convert", help="convert a published .pt head to .safetensors")
    convert_cmd.add_argument("source", help="published .pt head")
    convert_cmd.add_argument("destination", help="output .safetensors path")
    convert_cmd.add_argument("--kind", choices=KINDS, help="override the head kind if the file name does not tell")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .tiny_world.demo import run_demo

            print(run_demo(args.out, args.seed))
        elif args.command == "train":
            return run_train(args)
        elif args.command == "info":
            head = load_head(args.path)
            print(json.dumps(_summary(head), indent=2) if args.json else _describe(head))
        else:
            head = convert_published_head(args.source, args.destination, kind=args.kind)
            print(f"wrote {args.destination}: {head.info.describe()}, {count_parameters(head):,} parameters")
    except ReadoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _summary(head: ReadoutHead) -> dict:
    summary = asdict(head.info)
    summary["parameters"] = count_parameters(head)
    summary["layers"] = len(head.info.dims)
    return summary


def _describe(head: ReadoutHead) -> str:
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
        ("parameters", f"{count_parameters(head):,}"),
    ]
    if info.training:
        rows.append(("training", ", ".join(f"{k}={v}" for k, v in sorted(info.training.items()))))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


if __name__ == "__main__":
    sys.exit(main())
