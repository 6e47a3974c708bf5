#!/usr/bin/env python3
"""Pin every image of the compose stacks and docker/Dockerfile to the digest its tag names now.

Each image is written `repository:tag@sha256:<digest>` (the digest decides what is pulled; the
tag says which release it is). This script asks the registry, with
`docker buildx imagetools inspect REF --format '{{json .Manifest.Digest}}'` (the digest of the
multi-platform index, as vLLM's own release script reads it), and rewrites the digests. An
image not pinned yet carries a `${NAME_DIGEST:?...}` placeholder instead; it is filled the same way.

    python3 scripts/refresh-digests.py                  # resolve every tag, rewrite the digests
    python3 scripts/refresh-digests.py --check          # report only; exit 1 if any pin is stale
    python3 scripts/refresh-digests.py --tag vllm/vllm-openai=v0.30.0-cu129   # retag, then pin

Needs Docker with buildx and access to the registries. Every tag is resolved before any file is
written, so a failure leaves the files as they were. Standard library only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(
    r"(?P<repo>[a-z0-9][a-z0-9._/-]*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]*)"
    r"@(?P<pin>sha256:[0-9a-f]{64}|\$\{[A-Z0-9_]+:\?[^}]*\})"
)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def pinned_files(root: Path) -> list[Path]:
    return [*sorted((root / "compose").glob("*.yaml")), root / "docker" / "Dockerfile"]


def resolve(ref: str) -> str:
    """The digest `ref` (repository:tag) names in its registry now."""
    argv = ["docker", "buildx", "imagetools", "inspect", ref]
    argv += ["--format", "{{json .Manifest.Digest}}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"refresh-digests: cannot run docker buildx imagetools: {exc}") from None
    digest = done.stdout.strip().strip('"')
    if done.returncode != 0 or not DIGEST.fullmatch(digest):
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit status {done.returncode}"
        raise SystemExit(f"refresh-digests: cannot resolve {ref}: {reason}")
    return digest


def retag(text: str, tags: dict[str, str]) -> str:
    def swap(match: re.Match[str]) -> str:
        repo = match["repo"]
        if repo not in tags:
            return match[0]
        return f"{repo}:{tags[repo]}@{match['pin']}"

    return PIN.sub(swap, text)


def parse_tags(values: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        repo, sep, tag = value.partition("=")
        if not sep or not repo or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", tag):
            raise SystemExit(f"refresh-digests: --tag takes REPOSITORY=TAG, not {value!r}")
        tags[repo] = tag
    return tags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale pins, change nothing")
    parser.add_argument("--tag", action="append", default=[], metavar="REPOSITORY=TAG")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    tags = parse_tags(args.tag)
    if args.check and tags:
        raise SystemExit("refresh-digests: --check and --tag do not go together")

    texts = {path: retag(path.read_text(), tags) for path in pinned_files(args.root)}
    found = {(m["repo"], m["tag"]): m["pin"] for t in texts.values() for m in PIN.finditer(t)}
    missing = set(tags) - {repo for repo, _ in found}
    if missing:
        raise SystemExit(f"refresh-digests: no pinned image of {', '.join(sorted(missing))}")
    digests = {key: resolve(f"{key[0]}:{key[1]}") for key in sorted(found)}

    stale = 0
    for (repo, tag), digest in digests.items():
        pins = {
            m["pin"]
            for t in texts.values()
            for m in PIN.finditer(t)
            if (m["repo"], m["tag"]) == (repo, tag)
        }
        if pins == {digest}:
            state = "ok"
        else:
            state = "unpinned" if all(pin.startswith("$") for pin in pins) else "stale"
            stale += 1
        if state != "ok" or args.check:
            was = "" if state == "ok" else f" (was {', '.join(sorted(pins))})"
            print(f"{state:8} {repo}:{tag}@{digest}{was}")
    if args.check:
        return 1 if stale else 0

    for path, text in texts.items():
        new = PIN.sub(lambda m: f"{m['repo']}:{m['tag']}@{digests[(m['repo'], m['tag'])]}", text)
        if new != path.read_text():
            path.write_text(new)
            print(f"wrote {path.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
