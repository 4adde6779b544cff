"""Compute saliency maps for every image or series found in INPUT (files, folders, ZIP, DICOMDIR,
or study URLs: retrieved from their PACS into the cache first).

Writes, per image (per series for CT), into OUT/<id>/: <method>.npy (float32 on the native pixel
grid: rows x cols, or slices x rows x cols), <method>.png (the map over the windowed image; for a
series, the slice where the target is most probable; --previews jpeg or none for another or none),
for a series <method>.nii.gz (the map on the series' voxel grid: size, spacing, origin, direction),
predictions.json; and OUT/metrics.csv with one row per image and method. Localization columns are
filled where an annotation matches the image (--annotation: any annotation format the viewer reads,
or a folder of them).

With --dicom, also per map and DICOM source: <method>.dcm, the values in the source's study (a
Parametric Map over a CT series, a fractional Segmentation over a radiograph), and
<method>_sc.dcm, the PNG as a Secondary Capture; --anonymize writes them de-identified.
--send-to NODE_OR_URL (implies --dicom) stores each study's DICOM results on that PACS, into the
study they come from, as the study is committed; a study that cannot be sent is said and counted.
NODE_OR_URL is a node of pacs.toml, a DICOMweb server's root URL (http(s)://HOST[:PORT]/PREFIX, as
http://pacs.example.org/dicom-web: STOW-RS posts under it), dimse://CALLED_AE@HOST:PORT, or a study
URL (its server); a URL with a user name or password in it is refused.

Deletion and insertion AUCs (``--faithfulness``, about 100 forwards a map) are left out unless
asked for; ``--steps N`` sets their steps.

Each study's rows are appended to metrics.csv as it is committed, so --resume goes on with a run
that was stopped; studies that could not be done are listed in OUT/problems.csv, a study URL whose
server failed among them (the run goes on with the others; a URL that is wrong in itself, with
credentials in it say, stops the run before it starts). --workers N or
--scheduler ADDRESS run the studies on Dask (``viewer.batch.explain_run``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from viewer.cli.arguments import (
    add_cluster_arguments,
    add_images_model_methods,
    chosen_methods,
    cluster_spec,
    input_paths,
    load_model,
)
from viewer.cli.progress import Progress

HELP = "compute saliency maps and their metrics for images or series (batch, headless)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images_model_methods(parser, all_methods=True)
    parser.add_argument(
        "--target", action="append", help="label to explain (repeatable); default: top prediction"
    )
    parser.add_argument(
        "--annotation", action="append", type=Path, default=[], help="annotation file or folder"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random methods (default 0)")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (must not hold results already)"
    )
    parser.add_argument(
        "--faithfulness",
        action="store_true",
        help="also the deletion and insertion curves of every map (about 100 forwards a map; steps "
        "adapted to the input size: 49 at 224 px)",
    )
    parser.add_argument(
        "--steps", type=int, help="deletion/insertion steps (implies --faithfulness; 0 skips the curves)"
    )
    parser.add_argument("--sanity", action="store_true", help="also run the model-randomisation sanity check")
    parser.add_argument(
        "--dicom",
        action="store_true",
        help="also write each map as DICOM for a PACS: <method>.dcm (Parametric Map, or fractional "
        "Segmentation for radiographs) and <method>_sc.dcm (Secondary Capture)",
    )
    parser.add_argument(
        "--anonymize",
        action="store_true",
        help="with --dicom: hide patient identifiers and the original UIDs in the DICOM results",
    )
    parser.add_argument(
        "--send-to",
        metavar="NODE_OR_URL",
        help="send each study's DICOM results (implies --dicom) back to this PACS, into the study they "
        "come from, as each study is done: a node of pacs.toml, a DICOMweb server's root URL "
        "(http(s)://HOST[:PORT]/PREFIX, e.g. http://pacs.example.org/dicom-web), "
        "dimse://CALLED_AE@HOST:PORT, or a study URL; no user name or password in the URL "
        "(credentials go to a node: saliency-viewer pacs login NODE)",
    )
    parser.add_argument(
        "--previews",
        choices=("png", "jpeg", "none"),
        default="png",
        help="the picture written beside each map, over the image: png (default), jpeg (a tenth of "
        "the size, lossy) or none (the .npy maps only: the fastest)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="go on with OUT: skip the studies already in OUT/metrics.csv"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from viewer.batch.explain_run import ExplainRequest, run_explain
    from viewer.batch.explain_study import ExplainOptions
    from viewer.explain import METHODS
    from viewer.explain.engine import support_reason

    method_ids = chosen_methods(args.methods)
    if method_ids is None:
        return 2
    if args.send_to:
        args.dicom = True
    if args.anonymize and not args.dicom:
        print("--anonymize applies to --dicom results; add --dicom", file=sys.stderr)
        return 2
    if (args.out / "metrics.csv").exists() and not args.resume:
        print(
            f"{args.out / 'metrics.csv'} exists; add --resume, or choose a new output folder", file=sys.stderr
        )
        return 2
    cluster = cluster_spec(args)
    found = input_paths(args.inputs)
    if found is None:
        return 2
    inputs, unreachable = found
    model = load_model(args.model, args.device)
    if model is None:
        return 2

    def reason_against(method_id: str) -> str | None:
        return support_reason(METHODS[method_id], model)

    if args.methods == "all":  # every method this network supports; say which are left out
        for method_id in method_ids:
            if (reason := reason_against(method_id)) is not None:
                print(f"skipped {method_id}: {reason}", file=sys.stderr)
        method_ids = [m for m in method_ids if reason_against(m) is None]
    for method_id in method_ids:
        reason = reason_against(method_id)
        if reason:
            print(f"--methods: {reason}", file=sys.stderr)
            return 2
    for label in args.target or []:
        if label not in model.manifest.labels:
            labels = ", ".join(model.manifest.labels)
            print(f"--target {label!r} is not a label of {model.manifest.name}: {labels}", file=sys.stderr)
            return 2
    sender = None
    if args.send_to:  # opened once every argument is known good, so no early return leaves it open
        sender = _Sender.open(args.send_to)
        if sender is None:
            return 2
    options = ExplainOptions(
        tuple(method_ids),
        tuple(args.target or ()),
        args.seed,
        args.steps if args.steps is not None else None if args.faithfulness else 0,
        args.sanity,
        args.dicom,
        args.anonymize,
        previews=args.previews,
    )
    request = ExplainRequest(inputs, list(args.annotation), options, args.out, args.resume, cluster)
    bar = Progress(enabled=not args.quiet and sys.stderr.isatty())
    head, cautioned = [""], []

    def on_study(study, done: int, failed: int, pending: int) -> None:
        bar.done()
        for note in study.notes:
            print(note, file=sys.stderr)
        if study.caution and not cautioned:  # once per run; each predictions.json has it
            print(f"caution: {study.caution}", file=sys.stderr)
            cautioned.append(study.caution)
        print(f"{study.line} in {args.out / study.name}")
        if sender is not None:
            sender.send(args.out / study.name, model)
        if cluster is not None:  # there, the only progress there is
            bar.count(done, failed, pending)

    try:
        outcome = run_explain(
            model,
            request,
            on_problem=lambda source, reason: (
                bar.done(),
                print(f"skipped {source}: {reason}", file=sys.stderr),
            ),
            on_begin=lambda n, count, name: head.__setitem__(0, f"[{n}/{count}] {name}"),
            on_study=on_study,
            on_progress=lambda step, f: bar.show_step(head[0], step, f),
            on_cluster=lambda link, n: print(f"{n} Dask workers; dashboard {link}", file=sys.stderr),
        )
    except (ValueError, RuntimeError, OSError) as exc:  # includes a scheduler that cannot be reached
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.done()
        print(f"interrupted; the studies done are in {args.out}: add --resume to go on", file=sys.stderr)
        return 130
    finally:
        if sender is not None:
            sender.close()
    bar.done()
    if unreachable:  # listed first, as they were met first
        _list_problems(args.out, [*unreachable, *outcome.problems])
    if sender is not None and sender.failed:
        print(
            f"{sender.failed} studies' results could not be sent; send them with `saliency-viewer pacs send`",
            file=sys.stderr,
        )
    if not outcome.found:
        missed = f"; {len(unreachable)} study URL(s) could not be retrieved" if unreachable else ""
        print(f"No images found{missed}", file=sys.stderr)
        return 1
    for source in outcome.unmatched:
        print(f"annotation {source} matches none of the images", file=sys.stderr)
    if outcome.done_before:
        print(f"{outcome.done_before} studies were done already", file=sys.stderr)
    print(f"wrote {outcome.rows} rows to {args.out / 'metrics.csv'}")
    return 0


def _list_problems(out: Path, problems: list[tuple[str, str]]) -> None:
    """OUT/problems.csv with ``problems``: the run's own, and the study URLs it could not retrieve."""
    from viewer.batch.row_files import problems_text
    from viewer.io.atomic import replace_bytes

    out.mkdir(parents=True, exist_ok=True)
    replace_bytes(out / "problems.csv", problems_text(problems))


class _Sender:
    """--send-to: one connection for the run; each study's results sent as it is committed, a
    failure reported and counted without stopping the run."""

    def __init__(self, connection):
        self.connection = connection
        self.failed = 0
        self.algorithm = None

    @classmethod
    def open(cls, target: str) -> _Sender | None:
        from viewer.io.pacs import (
            ConfigError,
            PacsError,
            connect,
            is_study_url,
            load_config,
            parse_server_url,
        )

        try:
            config = load_config()
            node = parse_server_url(target, config) if is_study_url(target) else config.node(target)
            return cls(connect(node))
        except (ConfigError, PacsError) as exc:
            print(f"--send-to: {exc}", file=sys.stderr)
            return None

    def send(self, folder: Path, model) -> None:
        from viewer.io.pacs import PacsError
        from viewer.io.pacs.send import Algorithm, read_results, send

        files = sorted(folder.glob("*.dcm"))
        if not files:
            return
        if self.algorithm is None:
            self.algorithm = Algorithm.of_weights(model.manifest.name, model.manifest.weights)
        try:
            send(self.connection, read_results(files, self.algorithm))
            print(f"sent {len(files)} object(s) to {self.connection.node.name}", file=sys.stderr)
        except (PacsError, ValueError) as exc:
            self.failed += 1
            print(f"{folder.name}: {exc}", file=sys.stderr)

    def close(self) -> None:
        self.connection.close()
