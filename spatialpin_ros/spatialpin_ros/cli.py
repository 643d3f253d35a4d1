"""The ``spatialpin`` command.

    spatialpin demo [--seed N | --scene FILE] [--robot NAME] [--out DIR]   the headless demo, with a report
    spatialpin bringup GRAPH [-p node.param:=value ...]     run a node graph without ros2 launch
    spatialpin graphs                                       list the graphs
    spatialpin perceive FOLDER | FILE.mcap | --color C --depth D ...
                                                            perception on your own frames
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence


#: The demo's scene when neither ``--scene`` nor ``--seed`` is given (any ``--robot``).
DEFAULT_DEMO_SCENE = "tabletop"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="spatialpin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the headless demo and write a report")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--seed", type=int, default=None, help="seed of a random tabletop")
    g.add_argument("--scene", default="", help="YAML scene file (or a name under config/scenes); "
                   f"the default, with no --seed, is {DEFAULT_DEMO_SCENE!r}")
    d.add_argument("--out", default="", help="report folder (default runs/demo-<seed or scene>)")
    d.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the graph")
    d.add_argument("--robot", default="panda", help="the arm: a robot description under "
                   "config/robots/ (panda, xarm6) or a YAML file")
    b = sub.add_parser("bringup", help="run a node graph without ros2 launch")
    b.add_argument("graph", help="graph name (see 'spatialpin graphs')")
    b.add_argument("-p", "--param", action="append", default=[],
                   help="override: node.param:=value, or a launch argument arg:=value")
    sub.add_parser("graphs", help="list the node graphs")
    from spatialpin_ros import perceive_cmd
    pc = sub.add_parser("perceive", help="run perception on your own frames (image pair, folder "
                        "or MCAP) and write overlays and priors as JSON",
                        description=perceive_cmd.__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    perceive_cmd.add_arguments(pc)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "graphs":
        from spatialpin_ros.graph import GRAPHS
        for name, nodes in GRAPHS.items():
            print(f"{name}: " + ", ".join(f"{n.name} ({', '.join(n.params)})" for n in nodes))
        return 0
    if args.command == "perceive":
        return perceive_cmd.run(args)
    if args.command == "bringup":
        from spatialpin_ros.bringup import run
        try:
            return run(args.graph, args.param)
        except (KeyError, ValueError, FileNotFoundError) as e:
            print(f"spatialpin bringup: {e}", file=sys.stderr)
            return 2
    from spatialpin_ros.ros.demo import run_demo
    from pathlib import Path
    if args.seed is None and not args.scene:
        args.scene = DEFAULT_DEMO_SCENE
    name = Path(args.scene).stem if args.scene else f"seed{args.seed}"
    out = args.out or f"runs/demo-{name}"
    return run_demo(out, seed=args.seed or 0, scene_file=args.scene, timeout=args.timeout,
                    robot=args.robot)


if __name__ == "__main__":
    sys.exit(main())
