"""Turn the groups' raw results into the ``{"scenarios": …}`` document and the printed table.

Every headline figure is paired with a baseline measured in the same run and, where the issue sets
one, a goal. The JSON keeps the raw group output under ``details`` for anyone who wants the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PEER_NAMES = ("django_channels", "python_socketio", "socketio_node")


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _steps(obj: Any) -> list[dict[str, Any]]:
    """Every step record anywhere in a group's output."""
    if isinstance(obj, dict):
        if "offered_per_s" in obj and "other_busy_cores" in obj:
            return [obj]
        return [r for v in obj.values() for r in _steps(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in _steps(v)]
    return []


def host_noise(groups: dict[str, Any]) -> dict[str, Any]:
    """How busy the rest of the machine was while we measured."""
    steps = _steps(groups)
    others = sorted(r["other_busy_cores"] for r in steps)
    return {
        "steps": len(steps),
        "median_other_cores": others[len(others) // 2] if others else None,
        "noisy_steps": sum(1 for r in steps if r.get("noisy")),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def common_cost(ours: dict[str, Any] | None, other: dict[str, Any] | None, prefer: int = 40_000) -> dict[str, Any]:
    """Server CPU µs per delivery of both ladders at the same offered rate.

    Uses ``prefer`` deliveries/s when both kept up there, else the highest rate both kept up with.
    Cost at equal load is far steadier on a noisy host than the capacity search.
    """
    a = _get(ours, "us_per_delivery_by_rate") or {}
    b = _get(other, "us_per_delivery_by_rate") or {}
    common = sorted((int(k) for k in a if k in b), reverse=True)
    if not common:
        if not a or not b:
            return {"rate_per_s": None, "ours_us": None, "other_us": None, "ratio": None}
        # No rate both kept up with (a slow peer): compare ours at its lowest rate with the other
        # at its highest -- conservative for ours, since cost per delivery falls as rate rises.
        ra, rb = min(a, key=int), max(b, key=int)
        return {
            "rate_per_s": int(ra),
            "other_rate_per_s": int(rb),
            "ours_us": a[ra],
            "other_us": b[rb],
            "ratio": ratio(a[ra], b[rb]),
        }
    rate = prefer if prefer in common else next((r for r in common if r <= prefer), common[-1])
    oa, ob = a[str(rate)], b[str(rate)]
    # like every cost ratio here: ours / other, so < 1 means ours is cheaper
    return {"rate_per_s": rate, "ours_us": oa, "other_us": ob, "ratio": ratio(oa, ob)}


def build(groups: dict[str, Any], ours_ok: bool) -> dict[str, Any]:
    """The scenario document; ``None`` marks a figure that was not measured (see ``status``)."""
    raw_ws, ours_ws = groups.get("raw_ws") or {}, groups.get("ours_ws") or {}
    raw_big, ours_big = groups.get("raw_personal") or {}, groups.get("ours_personal") or {}
    raw_gr, ours_gr = groups.get("raw_growth") or {}, groups.get("ours_growth") or {}
    ours_status = "measured" if ours_ok else "pending: our server is not runnable yet"

    sc: dict[str, Any] = {}
    f_o, f_b = _get(ours_ws, "fanout_1k"), _get(raw_ws, "fanout_1k")
    sc["fanout_1k"] = {
        "ours_per_s": _get(f_o, "sustainable_per_s"),
        "baseline_per_s": _get(f_b, "sustainable_per_s"),
        "ratio": ratio(_get(f_o, "sustainable_per_s"), _get(f_b, "sustainable_per_s")),
        "p99_ms": _get(f_o, "p99_ms_at_goal_rate"),
        "loss_at_goal_rate": _get(f_o, "loss_at_goal_rate"),
        "baseline_p99_ms": _get(f_b, "p99_ms_at_goal_rate"),
        "baseline_loss_at_goal_rate": _get(f_b, "loss_at_goal_rate"),
        "goal_rate_per_s": 100_000,
        "ours_at_goal_p99_per_s": _get(f_o, "sustainable_at_goal_p99_per_s"),
        "baseline_at_goal_p99_per_s": _get(f_b, "sustainable_at_goal_p99_per_s"),
        "keep_up_cap_p99_ms": _get(f_b, "cap_p99_ms") or _get(f_o, "cap_p99_ms"),
        "loadgen_bound": bool(_get(f_o, "loadgen_bound") or _get(f_b, "loadgen_bound")),
    }
    cost = common_cost(f_o, f_b)
    sc["fanout_1k"].update(
        {
            "ours_us_per_delivery": cost["ours_us"],
            "baseline_us_per_delivery": cost["other_us"],
            "cost_ratio": cost["ratio"],  # ours µs / baseline µs: < 1 means ours is cheaper
            "cost_at_rate_per_s": cost["rate_per_s"],
        }
    )
    e_o, e_b = _get(ours_ws, "e2e_latency_100"), _get(raw_ws, "e2e_latency_100")
    sc["e2e_latency_100"] = {
        "p50_ms": _get(e_o, "p50_ms"),
        "p99_ms": _get(e_o, "p99_ms"),
        "loss": _get(e_o, "loss"),
        "baseline_p50_ms": _get(e_b, "p50_ms"),
        "baseline_p99_ms": _get(e_b, "p99_ms"),
        "rate_per_s": 50_000,
    }
    for key in ("http_post", "history_page"):
        d = _get(ours_ws, key) or {}
        sc[key] = {
            "ours_per_s": d.get("ours_per_s"),
            "baseline_per_s": d.get("baseline_per_s"),
            "ratio": ratio(d.get("ours_per_s"), d.get("baseline_per_s")),
            "server_us_per_request": d.get("server_us_per_request"),
            "statuses": d.get("statuses"),
        }
    b = _get(ours_ws, "http_batch") or {}
    sc["http_batch"] = {
        "activities_per_s": b.get("activities_per_s"),
        "requests_per_s": b.get("requests_per_s"),
        "baseline_per_s": b.get("baseline_per_s"),
        "ratio": ratio(b.get("activities_per_s"), b.get("baseline_per_s")),
        "statuses": b.get("statuses"),
    }
    i_o, i_b = _get(ours_ws, "ws_ingest"), _get(raw_ws, "ws_ingest")
    sc["ws_ingest"] = {
        "activities_per_s": _get(i_o, "activities_per_s"),
        "baseline_per_s": _get(i_b, "activities_per_s"),
        "ratio": ratio(_get(i_o, "activities_per_s"), _get(i_b, "activities_per_s")),
        "errors": _get(i_o, "errors"),
    }
    p_o, p_b = _get(ours_big, "personal_feeds"), _get(raw_big, "personal_feeds")
    sc["personal_feeds"] = {
        "us_per_message": _get(p_o, "us_per_message"),
        "baseline_us_per_message": _get(p_b, "us_per_message"),
        "ratio": ratio(_get(p_o, "us_per_message"), _get(p_b, "us_per_message")),
        "ingest_us_per_message": _get(p_o, "ingest_us_per_message"),
        "loss": _get(p_o, "loss"),
        "feeds": _get(p_o, "feeds") or _get(p_b, "feeds"),
    }
    m_o, m_b = _get(ours_big, "memory_idle"), _get(raw_big, "memory_idle")
    sc["memory_idle"] = {
        "kib_per_connection": _get(m_o, "kib_per_connection"),
        "baseline_kib_per_connection": _get(m_b, "kib_per_connection"),
        "ratio": ratio(_get(m_o, "kib_per_connection"), _get(m_b, "kib_per_connection")),
        "connections": _get(m_o, "connections") or _get(m_b, "connections"),
    }
    w2 = groups.get("ours_10k_w2") or {}
    sc["fanout_10k"] = {
        "p50_ms": w2.get("p50_ms"),
        "p99_ms": w2.get("p99_ms"),
        "loss": w2.get("loss"),
        "workers": w2.get("workers", 2),
        "rate_per_s": 50_000,
        "ours_one_process_p99_ms": _get(ours_gr, "fanout_10k_one_process", "p99_ms"),
        "baseline_p99_ms": _get(raw_gr, "fanout_10k_one_process", "p99_ms"),
        "baseline_loss": _get(raw_gr, "fanout_10k_one_process", "loss"),
    }
    g_o, g_b = _get(ours_gr, "us_per_delivery") or {}, _get(raw_gr, "us_per_delivery") or {}
    sc["growth"] = {
        "ours_us_per_delivery": g_o or None,
        "baseline_us_per_delivery": g_b or None,
        "ratio_by_n": {n: ratio(g_o.get(n), g_b.get(n)) for n in g_o} or None,
        "ours_10k_vs_100": ratio(g_o.get("10000"), g_o.get("100")),
        "baseline_10k_vs_100": ratio(g_b.get("10000"), g_b.get("100")),
    }
    mem = groups.get("ours_memory_deflate") or {}
    sc["memory_idle_deflate"] = {
        "kib_per_connection": mem.get("kib_per_connection"),
        "kib_per_connection_deflate_off": mem.get("kib_per_connection_off"),
        "connections": mem.get("connections"),
    }
    aud = groups.get("ours_audience") or {}
    sc["audience_filter"] = {
        "us_per_event_10_of_1000": _get(aud, "10_of_1000", "us_per_event"),
        "us_per_event_10_of_10": _get(aud, "10_of_10", "us_per_event"),
        "ratio": aud.get("ratio"),
        "leaked_deliveries": _get(aud, "10_of_1000", "leaked"),
        "loss": _get(aud, "10_of_1000", "loss"),
    }
    follows = groups.get("ours_follows") or {}  # bench/feedbench/follows.py
    for key in ("follow_writes", "follow_fanout", "enriched_timeline"):
        sc[key] = dict(follows.get(key) or {})
    sc["redis"] = {f"{k}_per_s": v for k, v in (groups.get("redis") or {}).items()} or None
    ours_fan = sc["fanout_1k"]["ours_per_s"]
    sc["peers"] = {}
    for name in PEER_NAMES:
        peer = groups.get(f"peer_{name}") or {}
        cost = common_cost(f_o, peer)
        sc["peers"][name] = {
            "peer_per_s": peer.get("sustainable_per_s"),
            "ours_per_s": ours_fan,
            "ratio": ratio(ours_fan, peer.get("sustainable_per_s")),
            "peer_at_goal_p99_per_s": peer.get("sustainable_at_goal_p99_per_s"),
            "peer_us_per_delivery": cost["other_us"],
            "ours_us_per_delivery": cost["ours_us"],
            "cost_ratio": cost["ratio"],
            "cost_at_rate_per_s": cost["rate_per_s"],
            **({"peer_cost_at_rate_per_s": cost["other_rate_per_s"]} if "other_rate_per_s" in cost else {}),
            **({"error": peer["error"]} if "error" in peer else {}),
        }
    for key, value in sc.items():
        if isinstance(value, dict) and key not in ("redis", "peers"):
            value.setdefault("status", ours_status)
    return sc


# -- goals ------------------------------------------------------------------------------------------

Check = Callable[[dict[str, Any]], bool | None]


def _le(v: Any, limit: float) -> bool | None:
    return None if v is None else v <= limit


def _ge(v: Any, limit: float) -> bool | None:
    return None if v is None else v >= limit


GOALS: list[tuple[str, str, Check]] = [
    ("fanout_1k", "≥0.8× raw broadcast deliveries/s", lambda s: _ge(s["fanout_1k"]["ratio"], 0.8)),
    (
        "fanout_1k p99",
        "p99 ≤20 ms at 100k deliveries/s",
        lambda s: (
            None
            if s["fanout_1k"]["p99_ms"] is None
            else (s["fanout_1k"]["loss_at_goal_rate"] == 0 and s["fanout_1k"]["p99_ms"] <= 20)
        ),
    ),
    (
        "fanout_10k",
        "2 workers: p99 ≤100 ms at 50k/s",
        lambda s: (
            None
            if s["fanout_10k"]["p99_ms"] is None
            else (s["fanout_10k"]["loss"] == 0 and s["fanout_10k"]["p99_ms"] <= 100)
        ),
    ),
    (
        "e2e_latency_100",
        "p50 ≤1 ms, p99 ≤3 ms at 50k/s",
        lambda s: (
            None
            if s["e2e_latency_100"]["p99_ms"] is None
            else (s["e2e_latency_100"]["p50_ms"] <= 1 and s["e2e_latency_100"]["p99_ms"] <= 3)
        ),
    ),
    ("http_post", "≥0.4× hello", lambda s: _ge(s["http_post"]["ratio"], 0.4)),
    ("http_batch", "≥50,000 activities/s", lambda s: _ge(s["http_batch"]["activities_per_s"], 50_000)),
    ("ws_ingest", "≥15,000 acks/s", lambda s: _ge(s["ws_ingest"]["activities_per_s"], 15_000)),
    ("history_page", "≥0.4× hello", lambda s: _ge(s["history_page"]["ratio"], 0.4)),
    ("personal_feeds", "≤50 µs CPU per message", lambda s: _le(s["personal_feeds"]["us_per_message"], 50)),
    ("memory_idle", "≤30 KiB per idle connection", lambda s: _le(s["memory_idle"]["kib_per_connection"], 30)),
    (
        "memory_idle_deflate",
        "≤64 KiB per idle connection with permessage-deflate",
        lambda s: _le(s["memory_idle_deflate"]["kib_per_connection"], 64),
    ),
    ("audience_filter", "CPU/event ≤2× with 990 non-matching", lambda s: _le(s["audience_filter"]["ratio"], 2.0)),
] + [
    (f"peers.{n}", "ours ≥2× peer sustainable deliveries/s", lambda s, n=n: _ge(s["peers"][n]["ratio"], 2.0))
    for n in PEER_NAMES
]


def verdicts(sc: dict[str, Any]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    for key, _, check in GOALS:
        try:
            out[key] = check(sc)
        except (KeyError, TypeError):
            out[key] = None
    return out


# -- the printed table -------------------------------------------------------------------------------


def _n(v: Any, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}{unit}"
    return f"{v:,.0f}{unit}" if isinstance(v, int | float) else str(v)


def table(sc: dict[str, Any], checks: dict[str, bool | None], ours_ok: bool) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    pending = "pending" if not ours_ok else "—"

    def o(v: Any, unit: str = "", digits: int = 0) -> str:
        return _n(v, unit, digits) if v is not None else pending

    def verdict(key: str) -> str:
        v = checks.get(key)
        return "PASS" if v is True else "FAIL" if v is False else ("pending" if not ours_ok else "n/a")

    f = sc["fanout_1k"]
    rows.append(
        (
            "fan-out N=1000 (deliveries/s)",
            o(f["ours_per_s"]),
            _n(f["baseline_per_s"]),
            _n(f["ratio"], "×", 2),
            "≥0.8×",
            verdict("fanout_1k"),
        )
    )
    rows.append(
        (
            f"  server µs CPU/delivery at {_n(f['cost_at_rate_per_s'])}/s",
            o(f["ours_us_per_delivery"], "", 2),
            _n(f["baseline_us_per_delivery"], "", 2),
            _n(f["cost_ratio"], "×", 2),
            "",
            "",
        )
    )
    rows.append(
        (
            "  p99 at 100k deliveries/s",
            o(f["p99_ms"], " ms", 1) + _loss(f["loss_at_goal_rate"]),
            _n(f["baseline_p99_ms"], " ms", 1) + _loss(f["baseline_loss_at_goal_rate"]),
            "",
            "≤20 ms",
            verdict("fanout_1k p99"),
        )
    )
    t = sc["fanout_10k"]
    rows.append(
        (
            "fan-out N=10k, 2 workers, p99 @50k/s",
            o(t["p99_ms"], " ms", 1) + _loss(t["loss"]),
            _n(t["baseline_p99_ms"], " ms", 1) + _loss(t["baseline_loss"]),
            "",
            "≤100 ms",
            verdict("fanout_10k"),
        )
    )
    e = sc["e2e_latency_100"]
    rows.append(
        (
            "write→delivery N=100 @50k/s p50/p99",
            f"{o(e['p50_ms'], '', 2)} / {o(e['p99_ms'], ' ms', 2)}",
            f"{_n(e['baseline_p50_ms'], '', 2)} / {_n(e['baseline_p99_ms'], ' ms', 2)}",
            "",
            "≤1 / ≤3 ms",
            verdict("e2e_latency_100"),
        )
    )
    for key, label in (
        ("http_post", "HTTP POST one (req/s, 50 conns)"),
        ("history_page", "history page of 50 (req/s)"),
    ):
        h = sc[key]
        rows.append(
            (
                label,
                o(h["ours_per_s"]),
                _n(h["baseline_per_s"]) + " hello" if h["baseline_per_s"] else pending,
                _n(h["ratio"], "×", 2),
                "≥0.4×",
                verdict(key),
            )
        )
    b = sc["http_batch"]
    rows.append(
        (
            "HTTP batches of 100 (activities/s)",
            o(b["activities_per_s"]),
            "",
            _n(b["ratio"], "× hello", 2),
            "≥50,000",
            verdict("http_batch"),
        )
    )
    w = sc["ws_ingest"]
    rows.append(
        (
            "WS publish, 1 conn pipelined (acks/s)",
            o(w["activities_per_s"]),
            _n(w["baseline_per_s"]),
            _n(w["ratio"], "×", 2),
            "≥15,000",
            verdict("ws_ingest"),
        )
    )
    p = sc["personal_feeds"]
    rows.append(
        (
            f"personal feeds x{_n(p['feeds'])} (µs CPU/msg)",
            o(p["us_per_message"], "", 1),
            _n(p["baseline_us_per_message"], "", 1),
            _n(p["ratio"], "×", 2),
            "≤50 µs",
            verdict("personal_feeds"),
        )
    )
    m = sc["memory_idle"]
    rows.append(
        (
            "idle connection (KiB RSS)",
            o(m["kib_per_connection"], "", 1),
            _n(m["baseline_kib_per_connection"], "", 1),
            _n(m["ratio"], "×", 2),
            "≤30 KiB",
            verdict("memory_idle"),
        )
    )
    md = sc["memory_idle_deflate"]
    rows.append(
        (
            "idle connection, deflate on (KiB RSS)",
            o(md["kib_per_connection"], "", 1),
            _n(md["kib_per_connection_deflate_off"], " off", 1),
            "",
            "≤64 KiB",
            verdict("memory_idle_deflate"),
        )
    )
    g = sc["growth"]
    go, gb = g["ours_us_per_delivery"] or {}, g["baseline_us_per_delivery"] or {}
    for n in ("100", "1000", "10000"):
        rows.append(
            (
                f"growth: µs CPU/delivery at N={int(n):,}",
                o(go.get(n), "", 2),
                _n(gb.get(n), "", 2),
                _n(ratio(go.get(n), gb.get(n)), "×", 2),
                "",
                "",
            )
        )
    a = sc["audience_filter"]
    rows.append(
        (
            "audience: µs CPU/event, 10 of 1000 match",
            o(a["us_per_event_10_of_1000"], "", 1),
            _n(a["us_per_event_10_of_10"], " (10 of 10)", 1) if a["us_per_event_10_of_10"] else pending,
            _n(a["ratio"], "×", 2),
            "≤2×",
            verdict("audience_filter"),
        )
    )
    for name in PEER_NAMES:
        pr = sc["peers"][name]
        rows.append(
            (
                f"peer {name} N=1000 (deliveries/s)",
                o(pr["ours_per_s"]),
                _n(pr["peer_per_s"]) if pr["peer_per_s"] is not None else ("error" if "error" in pr else "—"),
                _n(pr["ratio"], "×", 2),
                "≥2×",
                verdict(f"peers.{name}"),
            )
        )
        if pr["cost_ratio"] is not None:
            at = _n(pr["cost_at_rate_per_s"])
            if "peer_cost_at_rate_per_s" in pr:
                at += f" vs {_n(pr['peer_cost_at_rate_per_s'])}"
            rows.append(
                (
                    f"  µs CPU/delivery at {at}/s",
                    o(pr["ours_us_per_delivery"], "", 2),
                    _n(pr["peer_us_per_delivery"], "", 2),
                    _n(pr["cost_ratio"], "×", 2),
                    "",
                    "",
                )
            )
    fw, ff, fe = sc["follow_writes"], sc["follow_fanout"], sc["enriched_timeline"]
    us_copy = o(ff.get("server_us_per_copy"), "", 1) + " + " + _n(ff.get("redis_us_per_copy"), "", 1)
    us_plain = _n(ff.get("baseline_server_us_per_activity"), "", 1) + " + "
    us_plain += _n(ff.get("baseline_redis_us_per_activity"), "", 1)
    converge = f" in {ff['converge_s']:.1f} s" if ff.get("converge_s") else ""
    for label, ours, base, rel in (
        (
            "POST one, feed with a follower (req/s)",
            o(fw.get("followed_per_s")),
            _n(fw.get("unfollowed_per_s"), " unfollowed"),
            fw.get("followed_ratio"),
        ),
        (
            "POST one, [getstream] on (req/s)",
            o(fw.get("getstream_on_per_s")),
            _n(fw.get("unfollowed_per_s"), " off"),
            fw.get("getstream_on_ratio"),
        ),
        (
            f"follow fan-out to {_n(ff.get('followers'))} (copies/s)",
            o(ff.get("copies_per_s")) + converge,
            _n(ff.get("baseline_activities_per_s"), " plain writes"),
            ff.get("ratio"),
        ),
        ("  µs CPU/copy, server + Redis", us_copy, us_plain, None),
        (
            "enriched timeline of 50 (req/s)",
            o(fe.get("enriched_per_s")),
            _n(fe.get("flat_per_s"), " flat"),
            fe.get("ratio"),
        ),
        (
            "  same timeline without enrichment (req/s)",
            o(fe.get("timeline_per_s")),
            _n(fe.get("flat_per_s"), " flat"),
            fe.get("timeline_to_flat"),
        ),
    ):
        rows.append((label, ours, base, "" if rel is None else _n(rel, "×", 2), "", ""))
    r = sc.get("redis") or {}
    if r:
        rows.append(
            (
                "redis-benchmark SET/GET/PUBLISH (ops/s)",
                "",
                " / ".join(_n(r.get(f"{k}_per_s")) for k in ("set", "get", "publish")),
                "",
                "",
                "",
            )
        )
    head = ("scenario", "ours", "baseline", "ratio", "goal", "verdict")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(6)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def _loss(v: Any) -> str:
    return f" (loss {v:,})" if v else ""
