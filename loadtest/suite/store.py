"""A suite's results directory, `results/suite-<name>-<UTC time>/`:

suite.json      the definition, metadata, notes, status, saturation points and search
                answers per target, and one row per point (the same rows as suite.csv)
suite.csv       one row per point: target, swept values, every figure, metadata columns
points.jsonl    the journal: a line per finished point, appended and flushed as each ends;
                what `--resume` reads back (a point without its line is measured again)
gpu.jsonl       GPU samples over the whole suite (when there is a GPU)
report.html     plots and the table
<target>/<NN>-<point>/   records.jsonl, summary.json, summary.csv, replicas.jsonl, gpu.jsonl
<target>/logs/  a local fleet's and gateway's output
"""

import csv
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from loadtest.analysis.results import new_dir
from loadtest.suite.model import Suite, SuiteError
from loadtest.sweep.engine import Outcome
from loadtest.sweep.points import Point

JOURNAL = "points.jsonl"


@dataclass(frozen=True)
class PointResult:
    """What a point left: where its files are and its figures (hardware time)."""

    directory: str
    started_at: float
    ended_at: float
    figures: dict[str, Any]
    schedule: str
    requests: int
    closed_loop: bool
    lag_ok: bool
    counters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "target"


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"server": {"quantization": "fp8"}} -> {"server.quantization": "fp8"}."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if not isinstance(value, list) else orjson.dumps(value).decode()
    return out


def _dumps(document: Any) -> bytes:
    return orjson.dumps(
        document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str
    )


class Store:
    def __init__(self, directory: Path, suite: Suite) -> None:
        self.directory = directory
        self.suite = suite
        self.started_at = datetime.now(UTC)

    @classmethod
    def create(cls, out: Path, suite: Suite) -> "Store":
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        store = cls(new_dir(out / f"suite-{slug(suite.name)}-{stamp}"), suite)
        store.write_document("running", [])
        return store

    @classmethod
    def resume(cls, out: Path, suite: Suite) -> "Store":
        """The newest unfinished results directory of this suite under `out`."""
        for directory in sorted(out.glob(f"suite-{slug(suite.name)}-*"), reverse=True):
            try:
                document = orjson.loads((directory / "suite.json").read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if document.get("suite") != suite.name or document.get("status") == "finished":
                continue
            if document.get("fingerprint") != suite.fingerprint():
                raise SuiteError(
                    f"--resume: {directory} was started from another definition of suite "
                    f"{suite.name!r} (its workload, sweep, targets or limits differ); run "
                    "without --resume to start afresh"
                )
            store = cls(directory, suite)
            store.started_at = datetime.fromisoformat(document["started_at"])
            return store
        raise SuiteError(
            f"--resume: no unfinished results of suite {suite.name!r} under {out}; run "
            "without --resume to start"
        )

    def target_dir(self, target: str) -> Path:
        return self.directory / slug(target)

    def point_dir(self, target: str, order: int, point: Point) -> Path:
        """A fresh directory for a point (what an interrupted run left there is removed)."""
        path = self.target_dir(target) / f"{order:02d}-{point.slug()}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def finished(self, target: str) -> dict[str, PointResult]:
        """Points of `target` the journal holds, by point key."""
        found: dict[str, PointResult] = {}
        journal = self.directory / JOURNAL
        if not journal.exists():
            return found
        for line in journal.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut short by a crash: that point runs again
            if entry.get("target") == target:
                found[entry["key"]] = PointResult(**entry["result"])
        return found

    def record(self, target: str, outcome: Outcome[PointResult]) -> None:
        """Append a finished point to the journal, on disk before the next point starts."""
        entry = {
            "target": target,
            "key": outcome.point.key,
            "values": outcome.point.values,
            "result": outcome.result.to_dict(),
        }
        with (self.directory / JOURNAL).open("ab") as sink:
            sink.write(orjson.dumps(entry, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            sink.flush()
            os.fsync(sink.fileno())

    def write_document(
        self,
        status: str,
        rows: Sequence[dict[str, Any]],
        targets: Sequence[dict[str, Any]] = (),
        gpu: str = "",
    ) -> Path:
        suite = self.suite
        now = datetime.now(UTC)
        document = {
            "suite": suite.name,
            "description": suite.description,
            "source": suite.source,
            "status": status,
            "started_at": self.started_at.isoformat(),
            "updated_at": now.isoformat(),
            "wall_time_s": (now - self.started_at).total_seconds(),
            "fingerprint": suite.fingerprint(),
            "definition": suite.definition(),
            "workload": suite.describe_workload(),
            "metadata": suite.metadata,
            "notes": list(suite.notes),
            "gpu_telemetry": gpu,
            "targets": list(targets),
            "points": list(rows),
        }
        path = self.directory / "suite.json"
        path.write_bytes(_dumps(document))
        self._write_csv(rows)
        return path

    def _write_csv(self, rows: Sequence[dict[str, Any]]) -> None:
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        with (self.directory / "suite.csv").open("w", newline="") as sink:
            writer = csv.DictWriter(sink, fieldnames=list(columns))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if v is None else v for k, v in row.items()})


def read_document(directory: Path) -> dict[str, Any]:
    """suite.json of a results directory; SuiteError saying what is missing."""
    path = directory / "suite.json"
    if not path.is_file():
        raise SuiteError(f"{directory}: not a suite results directory (no suite.json)")
    try:
        document: dict[str, Any] = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not valid JSON: {exc}") from None
    return document
