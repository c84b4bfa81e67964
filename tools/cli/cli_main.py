"""causeway: the command line for the golden path.

    causeway login alice --roles researcher --teams oncology
    causeway --as alice model create tox21 --team oncology
    causeway --as alice register tox21 model.safetensors --format safetensors \
        --input features:FP32:-1,12 --output logits:FP32:-1,1 --golden golden.parquet --label-key label
    causeway --as alice validate tox21 1 --env dev
    causeway --as quinn approve tox21 1 --env test --meaning approved-for-release --reason "QA-123"
    causeway --as rita deploy tox21 1 --env dev
    causeway --as rita promote tox21 --from dev --to test
    causeway --as alice infer tox21 --input features='[[0.1, ...]]'
    causeway --as auditor audit verify

(This file is not named causeway.py: next to the binary it would shadow the `causeway` package of
generated protos.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import grpc

from tools.cli import lifecycle
from tools.cli.context import CliError, Context


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="causeway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", type=Path, default=Path(os.environ.get("CAUSEWAY_STACK", "var/devstack")))
    parser.add_argument("--as", dest="user", default=os.environ.get("CAUSEWAY_USER", ""))
    sub = parser.add_subparsers(dest="command", required=True)

    login = sub.add_parser("login", help="save a development identity (roles, teams) for --as")
    login.add_argument("user")
    login.add_argument("--roles", required=True)
    login.add_argument("--teams", default="")

    model = sub.add_parser("model", help="registered models")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    create = model_sub.add_parser("create")
    create.add_argument("name")
    create.add_argument("--team", required=True)
    create.add_argument("--description", default="")

    register = sub.add_parser("register", help="upload a model and register its next version")
    register.add_argument("name")
    register.add_argument("path")
    register.add_argument("--format", required=True, help="safetensors, torchscript, onnx, mlflow_model, ...")
    register.add_argument("--input", action="append", default=[], help="NAME:DATATYPE:DIMS")
    register.add_argument("--output", action="append", default=[], help="NAME:DATATYPE:DIMS")
    register.add_argument("--golden", help="golden dataset file")
    register.add_argument("--golden-format", default="parquet")
    register.add_argument("--label-key", default="label")
    register.add_argument(
        "--map", action="append", default=[], help="INPUT=COLUMN[,COLUMN...]: golden-set columns feeding an input"
    )
    register.add_argument("--baseline", help="training data (parquet/csv) to compute the baseline from")
    register.add_argument("--training-run", default="")
    register.add_argument("--commit", default="")
    register.add_argument("--parent", default="", help="NAME/VERSION")
    register.add_argument("--metric", action="append", default=[], help="NAME=VALUE")
    register.add_argument("--tag", action="append", default=[], help="KEY=VALUE")
    register.add_argument("--description", default="")

    for name, help_text in (
        ("validate", "run a validation and stream its progress"),
        ("gates", "which gates a version passes for an environment"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("name")
        cmd.add_argument("version", type=int)
        cmd.add_argument("--env", required=True, choices=sorted(lifecycle.ENVIRONMENTS))

    approve = sub.add_parser("approve", help="sign a version for an environment (e-signature)")
    approve.add_argument("name")
    approve.add_argument("version", type=int)
    approve.add_argument("--env", required=True, choices=sorted(lifecycle.ENVIRONMENTS))
    approve.add_argument("--meaning", default="approved-for-release", choices=sorted(lifecycle.MEANINGS))
    approve.add_argument("--reason", required=True)

    deploy = sub.add_parser("deploy", help="deploy a version to an environment")
    deploy.add_argument("name")
    deploy.add_argument("version", type=int)
    deploy.add_argument("--env", required=True, choices=sorted(lifecycle.ENVIRONMENTS))
    deploy.add_argument("--cloud", default="local", choices=sorted(lifecycle.CLOUDS))
    deploy.add_argument("--reason", default="deploy")
    deploy.add_argument("--no-wait", action="store_true", help="return once the change is committed")

    promote = sub.add_parser("promote", help="promote what runs in one environment to the next")
    promote.add_argument("name")
    promote.add_argument("--from", dest="source", required=True, choices=sorted(lifecycle.ENVIRONMENTS))
    promote.add_argument("--to", dest="target", required=True, choices=sorted(lifecycle.ENVIRONMENTS))
    promote.add_argument("--cloud", default="local", choices=sorted(lifecycle.CLOUDS))
    promote.add_argument("--reason", default="promote")
    promote.add_argument("--no-wait", action="store_true", help="return once the change is committed")

    rollback = sub.add_parser("rollback", help="roll an environment back to its previous approved revision")
    rollback.add_argument("name")
    rollback.add_argument("--env", required=True, choices=sorted(lifecycle.ENVIRONMENTS))
    rollback.add_argument("--cloud", default="local", choices=sorted(lifecycle.CLOUDS))
    rollback.add_argument("--reason", default="rollback")
    rollback.add_argument("--no-wait", action="store_true", help="return once the change is committed")

    infer = sub.add_parser("infer", help="one inference call (Open Inference Protocol)")
    infer.add_argument("name")
    infer.add_argument("--version", default="")
    infer.add_argument("--env", default="dev", choices=sorted(lifecycle.ENVIRONMENTS), help="whose runner to call")
    infer.add_argument("--input", action="append", required=True, help="NAME=JSON nested list")

    audit = sub.add_parser("audit", help="the audit chain")
    audit.add_argument("audit_command", choices=["verify"])
    return parser


def _print_event(event) -> None:
    print(lifecycle.dumps(event).replace("\n", " "), flush=True)


def _print_deployment(ctx: Context, args, deployment) -> None:
    if not args.no_wait:
        deployment = lifecycle.wait(ctx, deployment)
    print(lifecycle.dumps(deployment))


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    ctx = Context(args.stack, args.user)
    if args.command == "login":
        ctx.save_profile(args.user, [r for r in args.roles.split(",") if r], [t for t in args.teams.split(",") if t])
        print(f"saved profile {args.user}")
        return 0
    if args.command == "model":
        print(lifecycle.dumps(lifecycle.create_model(ctx, args.name, args.team, args.description)))
    elif args.command == "register":
        print(lifecycle.dumps(lifecycle.register(ctx, args)))
    elif args.command == "validate":
        run_ = lifecycle.validate(ctx, args.name, args.version, args.env, _print_event)
        print(lifecycle.dumps(run_))
    elif args.command == "gates":
        print(lifecycle.dumps(lifecycle.gates(ctx, args.name, args.version, args.env)))
    elif args.command == "approve":
        print(lifecycle.dumps(lifecycle.approve(ctx, args.name, args.version, args.env, args.meaning, args.reason)))
    elif args.command == "deploy":
        _print_deployment(ctx, args, lifecycle.deploy(ctx, args.name, args.version, args.env, args.cloud, args.reason))
    elif args.command == "promote":
        _print_deployment(
            ctx, args, lifecycle.promote(ctx, args.name, args.source, args.target, args.cloud, args.reason)
        )
    elif args.command == "rollback":
        _print_deployment(ctx, args, lifecycle.rollback(ctx, args.name, args.env, args.cloud, args.reason))
    elif args.command == "infer":
        inputs = {}
        for item in args.input:
            key, value = item.split("=", 1)
            inputs[key] = json.loads(value)
        outputs = lifecycle.infer(ctx, args.name, args.version, inputs, service=f"runner-{args.env}")
        print(json.dumps(outputs, indent=2))
    elif args.command == "audit":
        from causeway.audit.v1 import audit_service_pb2, audit_service_pb2_grpc

        stub = audit_service_pb2_grpc.AuditServiceStub(ctx.channel("registry"))
        print(lifecycle.dumps(stub.VerifyChain(audit_service_pb2.VerifyChainRequest(), metadata=ctx.metadata())))
    return 0


def main() -> int:
    try:
        return run(sys.argv[1:])
    except CliError as err:
        print(f"causeway: {err}", file=sys.stderr)
        return 2
    except grpc.RpcError as err:
        print(f"causeway: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
