"""Shared recording of the benchmarks, so that they serve as regression tests.

Every case calls :func:`record` with its group (the shape or problem it measures), its
kind (``"fastrelu"``, a plain loop, or ``"limit"``: the BLAS/LAPACK work any method must
do, measured in the same run) and its time per item. ``extra_info`` of each benchmark then
holds the time per item and, once the group's limit has been measured, the ratio to it:
a ratio survives a change of machine where a time does not. ``--benchmark-compare``
compares the times; ``extra_info["ratio_to_limit"]`` in the saved JSON is what to compare
across machines (docs/performance.md, "Benchmarks as regression tests").
"""

#: group -> kind -> (time per item in microseconds, the benchmark's extra_info)
_MEASURED = {}


def record(benchmark, group, kind, items, unit, seconds=None):
    """Record ``benchmark`` (of ``items`` items, ``unit`` their name: ``"sample"``,
    ``"point"``, ``"start"``...) as ``kind`` of ``group``; returns microseconds per item.

    The time is the best round's (``seconds`` overrides it). Sets
    ``extra_info["us_per_<unit>"]``, and ``extra_info["ratio_to_limit"]`` on every kind
    of the group as soon as both it and the group's ``"limit"`` are measured.
    """
    seconds = benchmark.stats.stats.min if seconds is None else seconds
    per_item = seconds / items * 1e6
    info = benchmark.extra_info
    info[f"us_per_{unit}"] = per_item
    info["group"] = str(group)
    info["kind"] = kind
    kinds = _MEASURED.setdefault(str(group), {})
    kinds[kind] = (per_item, info)
    limit = kinds.get("limit")
    if limit is not None:
        for other, (time, other_info) in kinds.items():
            if other != "limit" and limit[0] > 0:
                other_info["ratio_to_limit"] = time / limit[0]
    return per_item


def print_table(results, cases, names, label):
    """Print, per case and per name (a method or a path), fastrelu's time, the plain
    loop's and the limit's in milliseconds per item and the two ratios, from ``results``
    keyed ``(case, name, kind)`` in microseconds; ``label`` heads the name column."""
    width = max(len(label), *(len(name) for name in names)) + 1
    lines = [f"{'case':<11}{label:<{width}}{'fastrelu ms':>12}{'loop ms':>10}{'limit ms':>10}"
             f"{'loop/fastrelu':>15}{'fastrelu/limit':>16}"]
    for case in cases:
        for name in names:
            got = [results.get((case, name, kind)) for kind in ("fastrelu", "plain_loop", "limit")]
            if None in got:
                continue
            fast, loop, floor = (value / 1e3 for value in got)
            lines.append(f"{case:<11}{name:<{width}}{fast:>12.2f}{loop:>10.2f}{floor:>10.2f}"
                         f"{loop / fast:>15.2f}{fast / floor:>16.2f}")
    print("\n" + "\n".join(lines))
