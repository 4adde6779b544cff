"""Work with the PACS nodes configured in pacs.toml (``saliency-viewer pacs nodes`` prints where):
check a node, query its studies, retrieve them into the local cache, send results back.

    saliency-viewer pacs echo NODE
    saliency-viewer pacs query NODE [--patient-name 'DOE^*'] [--from 2024-01-01] [--modality CT]
    saliency-viewer pacs retrieve NODE STUDY_UID... | URL...
    saliency-viewer pacs send NODE_OR_URL FILE... [--model NAME]   (URL: a server's root, or a study's)
    saliency-viewer pacs login NODE        (stores the node's password in the OS keyring)

A study URL (``http(s)://.../studies/UID``, ``dimse://AE@HOST:PORT/UID``, ``pacs://NODE/UID``)
is also accepted by ``info``, ``explain``, ``evaluate`` and the viewer wherever a file is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from pathlib import Path

from viewer.cli.terminal import write_control
from viewer.io.safe_text import printable

HELP = "query, retrieve from and send to a PACS (DICOMweb or DIMSE)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("nodes", help="list the configured nodes and where the configuration is")
    echo = sub.add_parser("echo", help="check that a node answers (C-ECHO, or a QIDO-RS request)")
    echo.add_argument("node")
    query = sub.add_parser("query", help="list a node's studies that match")
    query.add_argument("node")
    for flag, help_text in (
        ("--patient-name", "patient's name, DICOM wildcards (DOE^*)"),
        ("--patient-id", "patient ID"),
        ("--modality", "a modality in the study (CT, CR, DX, MR)"),
        ("--accession", "accession number"),
        ("--description", "study description, DICOM wildcards"),
    ):
        query.add_argument(flag, default="", help=help_text)
    query.add_argument("--from", dest="date_from", type=_date, help="studies on or after YYYY-MM-DD")
    query.add_argument("--to", dest="date_to", type=_date, help="studies on or before YYYY-MM-DD")
    query.add_argument("--limit", type=int, default=500, help="at most this many studies (default 500)")
    query.add_argument("--json", action="store_true", help="print JSON instead of a table")
    retrieve = sub.add_parser("retrieve", help="retrieve studies into the local cache; prints their folders")
    retrieve.add_argument("source", help="a node name (then study UIDs) or a study URL")
    retrieve.add_argument("studies", nargs="*", metavar="STUDY_UID_OR_URL")
    send = sub.add_parser("send", help="send DICOM results (PM, SC, SEG, SR) to a node")
    send.add_argument(
        "target",
        help="a node name, a DICOMweb server's root URL (http(s)://HOST[:PORT]/PREFIX), "
        "dimse://CALLED_AE@HOST:PORT, or a study URL (its server)",
    )
    send.add_argument("files", nargs="+", type=Path)
    send.add_argument("--model", help="the model that made them, named in each object sent")
    login = sub.add_parser("login", help="store a node's password or token in the OS keyring")
    login.add_argument("node")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def run(args: argparse.Namespace) -> int:
    from viewer.io.pacs import ConfigError, PacsError

    try:
        return ACTIONS[args.action](args)
    except (ConfigError, PacsError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2


def _nodes(args: argparse.Namespace) -> int:
    from viewer.io.pacs import load_config
    from viewer.io.pacs.nodes import config_path

    config = load_config()
    print(f"configuration: {config_path()}")
    for name, node in config.nodes.items():
        auth = f", {node.auth} auth" if getattr(node, "auth", None) else ""
        print(f"  {name}: {node.protocol} {node.address()}{auth}")
    if not config.nodes:
        print("  no nodes configured")
    return 0


def _echo(args: argparse.Namespace) -> int:
    from viewer.io.pacs import connect, load_config

    node = load_config().node(args.node)
    connection = connect(node)
    try:
        connection.echo()
    finally:
        connection.close()
    print(f"{node.name}: {node.address()} answers")
    return 0


def _query(args: argparse.Namespace) -> int:
    from viewer.io.pacs import StudyQuery, connect, load_config

    node = load_config().node(args.node)
    query = StudyQuery(
        args.patient_name, args.patient_id, args.date_from, args.date_to, args.modality, args.accession,
        args.description, limit=args.limit,
    )  # fmt: skip
    connection = connect(node)
    try:
        studies = connection.find_studies(query)
    finally:
        connection.close()
    if args.json:
        json.dump([s.__dict__ | {"modalities": list(s.modalities)} for s in studies], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for s in studies:
        series = s.series_count if s.series_count is not None else "?"
        counts = f"{series} series, {s.instance_count or '?'} instances"
        print(f"{s.study_date or '--------'}  {s.patient_name or '(no name)'} [{s.patient_id}]  "
              f"{'/'.join(s.modalities) or '?'}  {s.description}  ({counts})  {s.study_uid}")  # fmt: skip
    print(
        f"{len(studies)} studies on {node.name}"
        + (" (the limit; narrow the query)" if len(studies) >= args.limit else "")
    )
    return 0


def _retrieve(args: argparse.Namespace) -> int:
    from viewer.io.pacs import is_study_url

    if is_study_url(args.source):
        sources = [args.source, *args.studies]
    else:
        if not args.studies:
            print("name the studies to retrieve: pacs retrieve NODE STUDY_UID...", file=sys.stderr)
            return 2
        sources = [f"pacs://{args.source}/{uid}" if not is_study_url(uid) else uid for uid in args.studies]
    for folder in retrieve_inputs(sources, quiet=False):
        print(folder)
    return 0


def retrieve_inputs(texts: list[str], *, quiet: bool = True) -> list[Path]:
    """Each text as a path: a study URL is retrieved into the cache (progress on stderr) and becomes
    its folder there; anything else is a path as given. Raises ``ConfigError``/``PacsError``."""
    return _retrieve_urls(texts, quiet=quiet, keep_going=False)[0]


def retrieve_each(texts: list[str], *, quiet: bool = True) -> tuple[list[Path], list[tuple[str, str]]]:
    """As ``retrieve_inputs``, but a study whose server fails is left out, as ``(url, reason)`` in
    the second list, and the others are still retrieved. A URL that is wrong in itself (credentials
    in it, an unknown node, not a UID) raises ``ConfigError`` before any server is asked."""
    return _retrieve_urls(texts, quiet=quiet, keep_going=True)


def _retrieve_urls(
    texts: list[str], *, quiet: bool, keep_going: bool
) -> tuple[list[Path], list[tuple[str, str]]]:
    from viewer.io.pacs import (
        PacsError,
        connect,
        is_study_url,
        load_config,
        open_cache,
        parse_study_url,
        retrieve_study,
    )

    if not any(is_study_url(t) for t in texts):
        return [Path(t) for t in texts], []
    config = load_config()
    # Every URL read before the first server is asked: a typo in the last stops nothing half done.
    locations = {text: parse_study_url(text, config) for text in texts if is_study_url(text)}
    cache = open_cache(config)
    show = not quiet or sys.stderr.isatty()
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    for text in texts:
        if not is_study_url(text):
            paths.append(Path(text))
            continue
        location = locations[text]
        series = [location.series_uid] if location.series_uid else None
        try:
            connection = connect(location.node)
            try:
                done = retrieve_study(
                    connection, cache, location.study_uid, series, on_progress=_progress(str(location), show)
                )
            except OSError as exc:  # the cache's disk, not the server
                raise PacsError(
                    location.node.name, "retrieve", f"cannot write into the cache: {exc.strerror or exc}"
                ) from None
            finally:
                connection.close()
        except PacsError as exc:
            if not keep_going:
                raise
            problems.append((text, str(exc)))
            continue
        finally:
            if show:
                print(file=sys.stderr)
        paths.append(done[0].folder if location.series_uid else done[0].folder.parent)
    return paths, problems


def _progress(name: str, show: bool):
    def progress(p) -> None:
        if show:
            counts = f"series {p.series_index + 1}/{p.series_count}, {p.instances}/{p.expected} instances"
            write_control(sys.stderr, f"\r{printable(name)}: {counts}")

    return progress


def _send(args: argparse.Namespace) -> int:
    from viewer.io.pacs import connect, is_study_url, load_config, parse_server_url
    from viewer.io.pacs.send import read_results, send

    config = load_config()
    node = parse_server_url(args.target, config) if is_study_url(args.target) else config.node(args.target)
    algorithm = _algorithm(args.model) if args.model else None
    datasets = read_results(args.files, algorithm)
    connection = connect(node)
    try:
        send(connection, datasets)
    finally:
        connection.close()
    print(f"sent {len(datasets)} object(s) to {node.name}")
    return 0


def _algorithm(name_or_path: str):
    from viewer.inference.catalog import resolve_model
    from viewer.inference.manifest import load_manifest
    from viewer.io.pacs.send import Algorithm

    manifest = load_manifest(resolve_model(name_or_path))
    return Algorithm.of_weights(manifest.name, manifest.weights)


def _login(args: argparse.Namespace) -> int:
    from viewer.io.pacs import load_config
    from viewer.io.pacs.nodes import store_secret

    node = load_config().node(args.node)
    if getattr(node, "auth", None) is None:
        print(f'{node.name} uses no authentication (set auth = "basic" or "bearer" first)', file=sys.stderr)
        return 2
    store_secret(
        node.name, getpass.getpass(f"{'token' if node.auth == 'bearer' else 'password'} for {node.name}: ")
    )
    print(f"stored in the OS keyring for {node.name}")
    return 0


ACTIONS = {
    "nodes": _nodes,
    "echo": _echo,
    "query": _query,
    "retrieve": _retrieve,
    "send": _send,
    "login": _login,
}
