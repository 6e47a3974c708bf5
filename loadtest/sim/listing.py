"""`vllm-sim profiles`: each profile's key numbers in one table."""

from loadtest.sim.profiles import UnknownProfile, load_profile

COLUMNS = (
    ("profile", "<"),
    ("engine", "<"),
    ("GPUs", "<"),
    ("GiB/GPU", ">"),
    ("weights", "<"),
    ("KV", "<"),
    ("weights GB", ">"),
    ("KV KiB/tok", ">"),
    ("KV tokens", ">"),
    ("ITL b1 ms", ">"),
    ("tok/s b1", ">"),
    ("sources", ">"),
)


def profile_row(name: str, gpu_memory_utilization: float, context: int) -> tuple[str, ...]:
    """The row of one profile; UnknownProfile if it does not load."""
    profile = load_profile(name)
    gpu, weights, kv = profile.gpu, profile.weights, profile.kv_dtype
    if not gpu and name != "tiny":  # a hand-made profile: its name says where it runs
        from loadtest.sim.hardware import parse

        try:
            spec = parse(name)
            gpu, weights, kv = spec.gpu, spec.weights, "bf16"
        except UnknownProfile:
            pass
    itl = profile.decode_itl(1, context)
    tokens = profile.kv_tokens(gpu_memory_utilization)
    if profile.engine != "vllm":
        tokens = min(tokens, profile.slot_context)  # one slot's context by default
    return (
        name,
        profile.engine,
        f"{profile.gpus}x {gpu or '-'}",
        f"{profile.gpu_memory_gib:g}" if profile.gpu_memory_gib else "-",
        weights or "-",
        kv or "-",
        f"{profile.weight_bytes / 1e9:.2f}",
        f"{profile.kv_bytes_per_token / 1024:.4g}",
        f"{tokens:,}",
        f"{itl * 1e3:.1f}",
        f"{1 / itl:.1f}",
        str(len(profile.sources)),
    )


def profile_table(names: list[str], gpu_memory_utilization: float, context: int) -> str:
    """A plain-text table, one row per profile, then what the columns mean."""
    rows = [tuple(title for title, _ in COLUMNS)]
    rows += [profile_row(name, gpu_memory_utilization, context) for name in names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            f"{cell:{align}{width}}"
            for cell, (_, align), width in zip(row, COLUMNS, widths, strict=True)
        ).rstrip()
        for row in rows
    ]
    lines.append(
        f"KV tokens: capacity at --gpu-memory-utilization {gpu_memory_utilization:g} (ollama, "
        "llamacpp: one slot's context; the slots and their context are set per replica). "
        f"ITL b1: one sequence decoding with {context} tokens of context; tok/s b1 its inverse. "
        "sources: how many public sources the profile cites (profiles.yaml, hardware.yaml)."
    )
    return "\n".join(lines)
