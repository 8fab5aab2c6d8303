"""The benchmark's report: the markdown table, the targets checked, and the notes."""

from __future__ import annotations

HEADER = ("| workload | contender | epoch s | vs numpy textbook | vs torch | vs floor "
          "| peak MB (dataset MB) | steps timed / epoch | CPU s / wall s |")


def _fmt(v, spec=".3f", suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def _ratio(a, b):
    """``a / b``, or None where either is missing (GPU rows have no floor, a reference may
    have failed)."""
    return a / b if a and b else None


def _rows(section: str, wname: str, wres: dict, errors: dict | None = None) -> list[str]:
    timings = wres["timings"]
    ref_np = timings.get("numpy textbook", {}).get("epoch_s")
    ref_t = timings.get("torch native CUDA" if section == "gpu" else "torch native", {}).get("epoch_s")
    floor = wres.get("floor_epoch_s")
    lines = []
    if floor:
        lines.append(f"| {wname} | floor (FLOPs / matmul rate) | {_fmt(floor, '.4f')} | "
                     f"{_fmt(_ratio(floor, ref_np), '.2f', 'x')} | "
                     f"{_fmt(_ratio(floor, ref_t), '.2f', 'x')} | 1.00x | - | - | - |")
    for name, t in timings.items():
        e = t["epoch_s"]
        mem = wres.get("memory", {}).get(name, {})
        mem_s = (f"{mem['peak_above_baseline_mb']:.0f} ({mem['dataset_mb']:.0f})"
                 if "peak_above_baseline_mb" in mem else "-")
        lines.append(
            f"| {wname} | {name} | {_fmt(e, '.4f')} | {_fmt(_ratio(e, ref_np), '.2f', 'x')} "
            f"| {_fmt(_ratio(e, ref_t), '.2f', 'x')} "
            f"| {_fmt(_ratio(e, floor), '.2f', 'x')} | {mem_s} "
            f"| {t['steps_timed']} / {t['steps_per_epoch']} | {_fmt(t.get('cpu_per_wall'), '.2f')} |")
    for key, err in (errors or {}).items():  # rows this installation cannot build (the reason: below)
        if key.startswith(wname + " ") and err.startswith("not available"):
            lines.append(f"| {wname} | {key[len(wname) + 1:]} | not available | - | - | - | - | - | - |")
    return lines


def table(result: dict) -> str:
    """The markdown table of one run (CPU, and GPU when measured)."""
    lines = []
    for section in ("cpu", "gpu"):
        rows = result.get(section)
        if not rows:
            continue
        lines += [f"### {section.upper()}", "", HEADER, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for wname, wres in rows.items():
            lines += _rows(section, wname, wres, result.get("errors") if section == "cpu" else None)
        lines.append("")
    if result.get("errors"):
        lines += ["### Errors (contenders left out)", ""]
        lines += [f"- {key}: {err}" for key, err in result["errors"].items()]
        lines.append("")
    if result.get("targets"):
        lines += ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
        for tg in result["targets"]:
            met = {True: "yes", False: "NO", None: "n/a"}[tg["met"]]
            lines.append(f"| {tg['target']} | {tg['measured']} | {met} |")
        lines.append("")
    lines += [f"- {note}" for note in result.get("notes", [])]
    return "\n".join(lines)


def _ratio_targets(t_of, add) -> None:
    """The targets that compare two contenders' epoch times on the CPU."""
    x, npt, tn = t_of("W1", "xpnet[numpy]"), t_of("W1", "numpy textbook"), t_of("W1", "torch native")
    loop = t_of("W1", "numpy textbook, README loop")
    checks = [
        ("W1: xpnet[numpy] no slower than numpy textbook", x, npt, 1.0),
        ("W1: xpnet[numpy] at most 0.75x torch native", x, tn, 0.75),
        ("W1, README loop (shuffle, gather each batch): xpnet[numpy] at most 1.0x the same loop in "
         "hand-written NumPy", t_of("W1", "xpnet[numpy] README loop"), loop, 1.0),
        ("W1, README loop: xpnet[jax] compiled step at most 1.0x the same loop in hand-written NumPy",
         t_of("W1", "xpnet[jax] compiled step, README loop"), loop, 1.0),
        ("W1: the trainer's compiled epoch (step.epoch, gathers inside) at most 0.8x the README loop in "
         "hand-written NumPy", t_of("W1", "xpnet[jax] step.epoch"), loop, 0.8),
        ("W1: xpnet[jax] compiled epoch (pre-stacked batches) at most 0.8x numpy textbook",
         t_of("W1", "xpnet[jax] compiled epoch"), npt, 0.8),
        ("W1: xpnet[torch] no slower than torch native", t_of("W1", "xpnet[torch]"), tn, 1.0),
    ]
    for text, a, b, limit in checks:
        if a and b:
            add(text, f"{a / b:.2f}x", a <= limit * b)


def _w3_targets(t_of, add) -> None:
    x3, i3, m3 = t_of("W3", "xpnet[numpy]"), t_of("W3", "xpnet ops inlined"), t_of("W3", "numpy buffers")
    if x3 and i3:
        ov = (x3 - i3) / x3
        add("W3: xpnet[numpy] Python overhead under 15% of the step "
            "(1 - t(xpnet ops inlined) / t(xpnet[numpy]))", f"{100 * ov:.1f}%", ov < 0.15)
    if x3 and m3:
        ov = (x3 - m3) / x3
        add("W3 (stricter, informative): 1 - t(numpy buffers) / t(xpnet[numpy]), which also counts "
            "the portable ops that hand-tuned NumPy avoids", f"{100 * ov:.1f}%", None)


# W4 (ConvNet) and W5 (LSTM language model): (workload, contender, reference, at most)
NETWORK_TARGETS = (("W4", "xpnet[numpy]", "numpy textbook", 0.5), ("W4", "xpnet[numpy]", "torch native", 2.5),
                   ("W4", "xpnet[jax] compiled epoch", "torch native", 1.0),
                   ("W5", "xpnet[numpy]", "torch native", 1.2), ("W5", "xpnet[jax] compiled step", "torch native", 1.0))


def _network_targets(cpu: dict, t_of, add) -> None:
    """W4's and W5's targets where the workload ran; "n/a" where a row was not available."""
    for w, a, b, limit in NETWORK_TARGETS:
        if w not in cpu:
            continue
        ta, tb = t_of(w, a), t_of(w, b)
        text = f"{w}: {a} at most {limit}x {b}"
        if ta and tb:
            add(text, f"{ta / tb:.2f}x", ta <= limit * tb)
        else:
            add(text, f"not measured (no {a if not ta else b} row)", None)


def _cores_target(cpu: dict, threads: int | None, add) -> None:
    ratios = [(w, n, t["cpu_per_wall"]) for w, res in cpu.items() for n, t in res.get("timings", {}).items()
              if t.get("cpu_per_wall") is not None]
    if threads and ratios:
        w, n, worst = max(ratios, key=lambda r: r[2])
        add(f"every row: CPU s / wall s at most its {threads} thread(s) + 0.1",
            f"{worst:.2f} (highest: {w} {n})", worst <= threads + 0.1)


def targets(cpu: dict, gpu: dict | None, threads: int | None = None) -> list[dict]:
    out = []

    def t_of(w, name, rows=cpu):
        return rows.get(w, {}).get("timings", {}).get(name, {}).get("epoch_s")

    def add(text, measured, met):
        out.append({"target": text, "measured": measured, "met": met})

    _ratio_targets(t_of, add)
    x2, f2 = t_of("W2", "xpnet[numpy]"), cpu.get("W2", {}).get("floor_epoch_s")
    if x2 and f2:
        add("W2: xpnet[numpy] within 1.5x of the floor", f"{x2 / f2:.2f}x", x2 <= 1.5 * f2)
    _w3_targets(t_of, add)
    _network_targets(cpu, t_of, add)
    mem = cpu.get("W1", {}).get("memory", {}).get("xpnet[numpy]", {})
    if "peak_above_baseline_mb" in mem:
        add("W1: xpnet[numpy] peak memory at most dataset + 64 MB",
            f"{mem['peak_above_baseline_mb']:.0f} MB (dataset {mem['dataset_mb']:.0f} MB)",
            mem["peak_above_baseline_mb"] <= mem["dataset_mb"] + 64)
    _cores_target(cpu, threads, add)
    if gpu:
        for w, limit in (("W1", 1.0), ("W2", 1.2)):
            a, b = t_of(w, "xpnet[cupy]", gpu), t_of(w, "torch native CUDA", gpu)
            if a and b:
                add(f"GPU {w}: xpnet[cupy] within {limit}x torch CUDA", f"{a / b:.2f}x", a <= limit * b)
    return out


def notes(result: dict, args, rate: dict) -> list[str]:
    m, threads = result["machine"], args.threads
    pin = result.get("pinned_to")
    held = (f"the process and every thread it starts pinned to core(s) {pin} (sched_setaffinity)"
            if pin else "NOT pinned (--no-pin, or no sched_setaffinity here): a library may use more cores "
            "than its threads")
    return [
        f"machine: {m['cpu']}, {m['cores']} cores; numpy {m['numpy']}, torch {m.get('torch', '-')}; "
        f"{threads} thread(s) for every contender (torch.set_num_threads; XLA_FLAGS for jax; "
        f"OPENBLAS_NUM_THREADS={result['threads']['OPENBLAS_NUM_THREADS'] or 'unset: OpenBLAS uses all cores'}); "
        f"{held}",
        "CPU s / wall s: CPU seconds (user + system, every thread of the process) per wall second over "
        "the row's timed runs; 1.00 is one busy core, more is parallel work",
        f"floor: matmul FLOPs of the step / {rate['best'] / 1e9:.0f} GFLOP/s (best of numpy and torch "
        f"on {rate['n']}x{rate['n']} float32 matmuls, on the same core(s))",
        f"epoch s: median of {args.repeats} interleaved repeats after a warm-up; where fewer steps "
        "than an epoch were timed (steps column) the time is scaled to the epoch",
        "README loop rows: a fresh permutation each epoch (uploaded once), each batch gathered from it "
        "(xp.take; X[idx] in NumPy), as the README's loop trains; the other rows slice pre-shuffled data",
        "Python overhead (W3) = 1 - t(xpnet ops inlined) / t(xpnet[numpy]): 'xpnet ops inlined' "
        "makes exactly xpnet's array calls, flat, so the difference is layer objects, dicts, checks "
        "and namespace lookups. The stricter 1 - t(numpy buffers) / t(xpnet[numpy]) also charges "
        "xpnet for the portable ops (no out=, one-hot by comparison) that hand-tuned NumPy avoids",
        "peak MB: VmHWM above the resident size after imports and warm-up, one contender per "
        "fresh process (pinned as the run), dataset included",
    ]
