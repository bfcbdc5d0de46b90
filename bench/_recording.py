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
