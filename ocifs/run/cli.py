"""Command line: ``ocifs mount``, ``ocifs umount``, ``ocifs demo``, and s3fs's own argv form.

``ocifs BUCKET[:/PREFIX] MOUNTPOINT -o opts [-f] [-d]`` (s3fs's form) is the same as
``ocifs mount ...``.  Every failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from ocifs import __version__
from ocifs.run.mount import (MountError, MountSpec, daemonize_and_mount, fusermount_unmount,
                    is_mounted, parse_bucket, prepare, run_mount, wait_for_exit)
from ocifs.run.options import OptionError, options_help, parse_options
from ocifs.run import status

COMMANDS = ("mount", "umount", "unmount", "demo", "container", "healthcheck", "status")


class UsageError(Exception):
    """A command line argparse refuses."""


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one ``ocifs:`` line and exit 1, like every other mistake (argparse
    would print the usage too and exit 2).  Subcommand parsers are of this class as well."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see ocifs --help)")


def _mount_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bucket", help="BUCKET or BUCKET:/PREFIX (or -o bucket=...)")
    parser.add_argument("mountpoint", nargs="?", help="existing empty directory")
    _option_arguments(parser)


def _option_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                        help="mount options (repeatable); see the table below")
    parser.add_argument("-f", dest="foreground", action="store_true",
                        help="stay in the foreground (default: return once mounted)")
    parser.add_argument("-d", dest="debug", action="count", default=0,
                        help="more logging (-d: info, -d -d: dbg)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ocifs", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mount an S3-compatible bucket (OCI Object Storage, AWS, SeaweedFS, ...) "
                    "as a directory; objects in s3fs-fuse's format.",
        epilog="mount options (-o):\n" + options_help() +
               "\n\ns3fs's form also works: ocifs BUCKET[:/PREFIX] MOUNTPOINT -o OPTS [-f] [-d]")
    parser.add_argument("--version", action="version", version=f"ocifs {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    mount = commands.add_parser("mount", help="mount a bucket")
    _mount_arguments(mount)
    umount = commands.add_parser("umount", aliases=["unmount"], help="unmount (after uploads finish)")
    umount.add_argument("mountpoint")
    umount.add_argument("-z", dest="lazy", action="store_true", help="lazy unmount")
    umount.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the ocifs process to finish and exit (default 600)")
    demo = commands.add_parser(
        "demo", help="start a local S3 server (SeaweedFS) and mount a bucket of it, in the foreground")
    demo.add_argument("mountpoint", nargs="?", default="./ocifs-demo/mnt",
                      help="where to mount (default ./ocifs-demo/mnt)")
    demo.add_argument("--data", default="./ocifs-demo/data", help="where the server keeps its data")
    demo.add_argument("--server", choices=("seaweedfs", "moto"), default="seaweedfs")
    _option_arguments(demo)
    _container_arguments(commands)
    status.add_arguments(commands)
    return parser


def _container_arguments(commands) -> None:
    """``ocifs container`` (the efrecon/s3fs-compatible image entrypoint) and ``ocifs healthcheck``."""
    container = commands.add_parser(
        "container", help="image entrypoint: mount from AWS_S3_* variables, then run COMMAND")
    container.add_argument("--healthcheck", action="store_true",
                           help="check the mount of a running container instead")
    container.add_argument("container_command", nargs=argparse.REMAINDER, metavar="COMMAND",
                           help="run once the bucket is mounted (default: wait for a signal)")
    health = commands.add_parser("healthcheck", help="exit 0 if MOUNTPOINT answers a real operation")
    health.add_argument("mountpoint", nargs="?", help="default: $AWS_S3_MOUNT")
    health.add_argument("--timeout", type=float, default=None,
                        help="seconds (default: $OCIFS_HEALTHCHECK_TIMEOUT or 5)")


def cmd_container(args: argparse.Namespace) -> int:
    from ocifs.run import container
    return container.main(args)


def _fail(message: str) -> int:
    """The one line a mistake prints (a store's multi-line message is joined)."""
    print("ocifs: " + " ".join(message.split()), file=sys.stderr)
    return 1


def _options(args: argparse.Namespace, extra: list[str] | None = None):
    options = parse_options(list(extra or []) + args.options)
    if args.debug:
        options.dbglevel = "info" if args.debug == 1 else "dbg"
    return options


def cmd_mount(args: argparse.Namespace) -> int:
    options = _options(args)
    where, mountpoint = args.bucket, args.mountpoint
    if mountpoint is None:  # s3fs's "s3fs MOUNTPOINT -o bucket=NAME"
        if not options.bucket:
            raise MountError("missing mountpoint (or give the bucket as -o bucket=NAME)")
        where, mountpoint = options.bucket, args.bucket
    elif options.bucket:
        raise MountError("the bucket is given twice: on the command line and as -o bucket=")
    bucket, prefix = parse_bucket(where)
    spec = MountSpec(bucket, prefix, mountpoint, options, foreground=args.foreground,
                     stop_timeout=options.stop_timeout)
    prepare(spec)
    if spec.foreground:
        return run_mount(spec)
    return daemonize_and_mount(spec)


def cmd_umount(args: argparse.Namespace) -> int:
    path = os.path.realpath(args.mountpoint)
    if not is_mounted(path):
        return _fail(f"{path} is not mounted")
    result = fusermount_unmount(path, lazy=args.lazy)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "fusermount3 failed"
        return _fail(f"cannot unmount {path}: {detail}")
    from ocifs.run.progress import UploadProgress
    progress = UploadProgress(path)
    try:
        exited = wait_for_exit(path, timeout=args.timeout, tick=progress.tick)
    finally:
        progress.close()
    if not exited:
        return _fail(f"{path} is unmounted but its ocifs process is still running after {args.timeout:g} s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A real mount of a bucket on an embedded local server: no cloud account needed."""
    from ocifs.run.localserver import LocalS3Server

    os.makedirs(args.mountpoint, exist_ok=True)
    os.makedirs(args.data, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with LocalS3Server(kind=args.server, data_dir=args.data) as server:
        server.create_bucket("demo")
        os.environ["AWS_ACCESS_KEY_ID"] = server.access_key
        os.environ["AWS_SECRET_ACCESS_KEY"] = server.secret_key
        extra = [f"url={server.endpoint_url},use_path_request_style,dbglevel=info"]
        options = _options(args, extra)
        spec = MountSpec("demo", "", args.mountpoint, options, foreground=True,
                         stop_timeout=options.stop_timeout)
        prepare(spec)
        print(f"ocifs demo: bucket 'demo' on {server.kind} at {server.endpoint_url} "
              f"is mounted at {os.path.abspath(args.mountpoint)}\n"
              f"  try, in another terminal: cp /etc/os-release {args.mountpoint}/ && ls -l {args.mountpoint}\n"
              f"  Ctrl+C unmounts (after uploading) and stops the server; data stays in {args.data}",
              file=sys.stderr, flush=True)
        return run_mount(spec)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # s3fs's form: the first word is the bucket, not a command.
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        argv.insert(0, "mount")
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc))
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"mount": cmd_mount, "umount": cmd_umount, "unmount": cmd_umount, "demo": cmd_demo,
                "container": cmd_container, "healthcheck": cmd_container, "status": status.main}
    try:
        return handlers[args.command](args)
    except (MountError, OptionError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
