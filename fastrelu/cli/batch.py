"""``fastrelu batch SPEC.toml --out DIR``: a list or grid of bias estimations (the spec
and the runs are :mod:`fastrelu._batch.jobs`; see docs/batch.md)."""

import json
import sys

from fastrelu._batch.jobs import run_batch
from fastrelu.cli.common import _progress, add_cluster_arguments, add_progress_arguments


def add_parser(sub):
    """The ``batch`` subcommand."""
    batch = sub.add_parser("batch", help="run a list or grid of bias estimations from a TOML spec (docs/batch.md)")
    batch.add_argument("spec", help="the spec file (TOML)")
    batch.add_argument("--out", required=True, help="directory for the results (created if needed)")
    batch.add_argument("--jobs", type=int, default=None, help="worker threads per job (default: all cores)")
    batch.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    add_progress_arguments(batch, "always show the progress bar on stderr (default: when stderr is a terminal)")
    add_cluster_arguments(batch, checkpoint_path=False)
    batch.set_defaults(run=run)
    return batch


def run(args):
    records = run_batch(args.spec, args.out, n_jobs=args.jobs, client=args.client,
                        checkpoint_interval=args.checkpoint_interval, progress=_progress(args))
    failed = [r for r in records if r["status"] == "failed"]
    if args.json:
        json.dump({"out": args.out, "jobs": records, "n_failed": len(failed)}, sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        print(format_table(records))
        print(f"results in {args.out} (summary.csv, summary.json, NAME.npz and NAME.json per job)")
    if failed:
        print(f"fastrelu: {len(failed)} of {len(records)} jobs failed:", file=sys.stderr)
        for record in failed:
            print(f"  {record['name']}: {record['error']}", file=sys.stderr)
        return 1
    return 0


def format_table(records):
    """The summary as aligned text."""
    rows = [("job", "status", "method", "shape", "samples", "min alpha", "max alpha", "seconds")]
    for r in records:
        shape = "x".join(map(str, r["shape"])) if r.get("shape") else "-"
        rows.append((r["name"], r["status"], r.get("method") or "-", shape,
                     "-" if r.get("method") == "pbe" else _cell(r, "n_samples", "d"),
                     _cell(r, "alpha_min", ".6g"), _cell(r, "alpha_max", ".6g"),
                     _cell(r, "elapsed", ".2f")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _cell(record, key, spec):
    """A number of a job's record as text (``-`` when the record has none)."""
    return "-" if record.get(key) is None else format(record[key], spec)
