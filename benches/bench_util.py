"""Helpers for the peer benches' reports (throughput_shared.sh, latency.sh,
overload.sh): reading vane-loadgen's --json output."""

import json
import math
import statistics


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def steady(report, warmup_s, key="received_per_s"):
    """Mean per-second rate over the measured part of the run, from the
    loadgen's once-a-second timeline: the ticks taken while publishing
    ("running"), less the first ceil(warmup)+1 of them (the first one also
    covers connecting, the next ones the warm-up).

    `delivery.achieved_rate` divides everything received, including what
    arrived while draining after publishing stopped, by the publishing time;
    with a broker that builds a backlog that overstates its rate (seconds of
    backlog at saturation), so the saturated figures use this instead."""
    ticks = [t for t in report.get("timeline", []) if t["phase"] == "running"]
    skip = math.ceil(warmup_s) + 1
    ticks = ticks[skip:]
    if not ticks:
        return None
    return statistics.mean(t[key] for t in ticks)


def fmt_rate(x):
    return "-" if x is None else f"{x:,.0f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"


def seconds(s):
    """'10s', '500ms', '2m' -> seconds."""
    s = s.strip()
    for unit, mult in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * mult
    return float(s)


def header(out):
    """One sentence from $OUT_DIR/meta.txt (benches/lib.sh meta_start/meta_end)."""
    m = {}
    try:
        for line in open(f"{out}/meta.txt"):
            k, _, v = line.rstrip("\n").partition("=")
            m[k] = v
    except OSError:
        return "(no meta.txt)"
    return (f"Run {m.get('started', '?')} to {m.get('ended', '?')} UTC on {m.get('cpus', '?')} CPUs, "
            f"checkout {m.get('checkout', '?')}, Vane binary {m.get('vane_binary', '?')}; "
            f"load average {m.get('load_start', '?')} at the start, {m.get('load_end', '?')} at the end.")
