"""report.json (for machines) and report.md (for people): the same content, the markdown with
the summary table first and one section each after it."""

import json
import math

from .checks import FAIL, NOT_APPLICABLE, PASS

SECTION_TITLES = {
    "gemm": "GEMM (matrix multiply)",
    "membw": "Memory bandwidth",
    "allreduce": "All-reduce",
    "ddp": "DDP training",
    "threebody": "Three-body integration",
}


def strict_json(value):
    """value with non-finite floats as strings ("inf", "nan"): report.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def all_checks(sections):
    return [c for result in sections.values() for c in result["checks"]]


def summary(sections):
    checks = all_checks(sections)
    failed = [c["name"] for c in checks if c["status"] == FAIL]
    return {
        "result": "fail" if failed else "pass",
        "exit_code": 1 if failed else 0,
        "checks": len(checks),
        "pass": sum(c["status"] == PASS for c in checks),
        "fail": len(failed),
        "not_applicable": sum(c["status"] == NOT_APPLICABLE for c in checks),
        "failed_checks": failed,
    }


def build(facts, devices, config, sections, skipped):
    return {
        "tool": "gpu-node-validate",
        "facts": facts,
        "devices": devices,
        "config": config,
        "sections": sections,
        "sections_not_run": skipped,
        "summary": summary(sections),
    }


def to_json(report):
    return json.dumps(strict_json(report), indent=2, sort_keys=False, allow_nan=False) + "\n"


def number(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return "%.4g" % value
    return str(value)


def with_unit(value, unit):
    text = number(value)
    if value is None or not unit:
        return text
    return text + "x" if unit == "x" else "%s %s" % (text, unit)


def expected_text(c):
    if c["status"] == NOT_APPLICABLE or c["expected"] is None:
        return "-"
    if isinstance(c["expected"], str):
        return c["expected"]
    return "%s %s" % (c["comparison"], with_unit(c["expected"], c["unit"]))


STATUS_TEXT = {PASS: "pass", FAIL: "**FAIL**", NOT_APPLICABLE: "n/a"}


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows
    ]
    return lines


def _measurement_rows(name, m):
    """A table of one section's measurements, or no lines when it has none."""
    if name == "gemm":
        return _table(
            ["device", "dtype", "n", "TFLOPS", "s per product", "rel. error"],
            [
                (
                    r["device"],
                    r["dtype"],
                    r["n"],
                    number(r["tflops"]),
                    number(r["seconds_per_product_s"]),
                    number(r["max_rel_error"]),
                )
                for r in m.get("results", [])
            ],
        )
    if name == "membw":
        return _table(
            ["device", "copy size (bytes)", "GB/s", "mismatched words"],
            [
                (r["device"], r["size_bytes"], number(r["bandwidth_gbs"]), r["mismatched_words"])
                for r in m.get("results", [])
            ],
        )
    if name == "allreduce":
        return _table(
            ["size (bytes)", "s per all-reduce", "algbw GB/s", "busbw GB/s", "mismatched"],
            [
                (
                    r["size_bytes"],
                    number(r["seconds_per_op_s"]),
                    number(r["algbw_gbs"]),
                    number(r["busbw_gbs"]),
                    r["mismatched_elements"],
                )
                for r in m.get("results", [])
            ],
        )
    if name == "ddp":
        lines = _table(
            [
                "GPUs (world size)",
                "seconds",
                "tokens/s",
                "speedup",
                "efficiency",
                "first -> last loss",
            ],
            [
                (
                    r["world_size"],
                    number(r["seconds_s"]),
                    number(r["tokens_per_s"]),
                    number(r["speedup"]),
                    "-" if r["efficiency"] is None else "%.0f%%" % (100 * r["efficiency"]),
                    "%.3f -> %.3f" % (r["losses_rank0"][0], r["losses_rank0"][-1]),
                )
                for r in m.get("runs", [])
            ],
        )
        work = "Mixer model of %s parameters; global batch %s x %s tokens; %s steps, %s of them "
        work += "warm-up (untimed, the weights compared across world sizes)."
        work %= tuple(
            number(m.get(k))
            for k in ("parameters", "global_batch", "seq_len", "steps", "warmup_steps")
        )
        return [work, "", *lines, "", "![DDP speedup](scaling.png)"]
    if name == "threebody":
        rows = []
        for r in m.get("results", []):
            drift = r["energy_drift"]
            for d in r["devices"]:
                rows.append(
                    (
                        r["dtype"],
                        d["device"],
                        number(d["seconds_s"]),
                        number(d["config_steps_per_s"]),
                        number(r["seed_seconds_for_this_work_s"]),
                        number(drift["median"]),
                        number(drift["max"]),
                        "%d of %d" % (drift["close_encounters"], drift["configurations"]),
                    )
                )
        return _table(
            [
                "dtype",
                "device",
                "seconds",
                "config-steps/s",
                "seed V100 s",
                "drift median",
                "drift max",
                "close encounters",
            ],
            rows,
        )
    return []


def to_markdown(report):
    facts, s = report["facts"], report["summary"]
    lines = [
        "# GPU node validation: %s" % facts["host"],
        "",
        "%s, gpu-node-validate %s, torch %s, CUDA %s, NCCL %s, device: %s"
        % (
            facts["time"],
            facts["tool_version"],
            facts["torch"],
            facts["cuda"] or "-",
            facts["nccl"] or "-",
            ", ".join(
                "%s (%s)" % (d["name"], d.get("uuid", "index %d" % d["index"]))
                for d in report["devices"]
            ),
        ),
        "",
        "**Result: %s** - %d checks: %d pass, %d fail, %d not applicable."
        % (s["result"].upper(), s["checks"], s["pass"], s["fail"], s["not_applicable"]),
        "",
        "## Summary",
        "",
    ]
    rows = [
        (c["name"], with_unit(c["value"], c["unit"]), expected_text(c), STATUS_TEXT[c["status"]])
        for c in all_checks(report["sections"])
    ]
    lines += _table(["check", "value", "expected", "status"], rows)
    for name, result in report["sections"].items():
        lines += ["", "## %s" % SECTION_TITLES.get(name, name), ""]
        lines += [*_measurement_rows(name, result["measurements"]), ""]
        lines.append("Took %.1f s." % result.get("seconds_s", 0.0))
        lines.append("")
        for c in result["checks"]:
            line = "- `%s` %s: %s" % (c["name"], STATUS_TEXT[c["status"]], c["reason"])
            if c["likely_cause"]:
                line += " Likely cause: %s." % c["likely_cause"]
            lines.append(line)
    if report["sections_not_run"]:
        lines += ["", "Sections not run: %s." % ", ".join(report["sections_not_run"])]
    return "\n".join(lines) + "\n"


def failure_lines(report):
    """One line per failed check for stderr: value, expectation, likely cause."""
    lines = []
    for c in all_checks(report["sections"]):
        if c["status"] == FAIL:
            lines.append(
                "FAIL %s: %s, expected %s (%s); likely cause: %s"
                % (
                    c["name"],
                    with_unit(c["value"], c["unit"]),
                    expected_text(c),
                    c["reason"],
                    c["likely_cause"],
                )
            )
    return lines
