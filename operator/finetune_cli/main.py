"""`kubectl-finetune`: `kubectl finetune upload FILE --claim CLAIM [--path PATH] [-n NAMESPACE]`.

Installed with the project (no torch needed: the dataset validator is the trainer's pure reader);
named `kubectl-finetune` so that kubectl finds it as the `finetune` plugin when it is on PATH.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from finetune_api.training import DatasetFormat, Method

from .upload import DEFAULT_IMAGE, Kubectl, Upload, UploadError, check_path, upload, validate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubectl-finetune", description="finetune-operator's user commands")
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser(
        "upload",
        help="validate a local dataset with the trainer's checks and copy it onto a PersistentVolumeClaim; "
        "prints the pvc:// URI for dataset.source",
    )
    u.add_argument("file", type=Path, help="the JSONL (or JSON array) dataset")
    u.add_argument("--claim", required=True, help="PersistentVolumeClaim in the namespace")
    u.add_argument("--path", help="path on the claim (default: the file's name)")
    u.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    u.add_argument("--format", default="auto", choices=[f.value for f in DatasetFormat], help="dataset.format")
    u.add_argument("--method", choices=[m.value for m in Method], help="the method: refuse data it cannot train on")
    u.add_argument("--min-records", type=int, default=10, help="dataset.minRecords (default 10)")
    u.add_argument("--replace", action="store_true", help="overwrite PATH if it exists")
    u.add_argument(
        "--image", default=DEFAULT_IMAGE, help=f"image of the copy pod (a shell + coreutils; {DEFAULT_IMAGE})"
    )
    u.add_argument("--kubeconfig", help="kubeconfig file")
    u.add_argument("--context", help="kubeconfig context")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.file.is_file():
            raise UploadError(f"{args.file}: no such file")
        path = check_path(args.path or args.file.name)
        print(
            validate(
                args.file, DatasetFormat(args.format), Method(args.method) if args.method else None, args.min_records
            ),
            file=sys.stderr,
        )
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise UploadError("kubectl is not on PATH")
        base = [kubectl] + [
            f"--{flag}={v}"
            for flag, v in (("kubeconfig", args.kubeconfig), ("context", args.context), ("namespace", args.namespace))
            if v
        ]
        uri = upload(Kubectl(base), Upload(args.file, args.claim, path, args.replace, args.image))
    except UploadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
