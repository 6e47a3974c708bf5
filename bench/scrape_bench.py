"""Event-loop time one scrape costs the gateway: parse_metrics on a real vLLM /metrics page,
against handing the whole page to prometheus-client's parser.

    .venv/bin/python bench/scrape_bench.py
"""

import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from turnout.engine_metrics import parse_metrics  # noqa: E402


def whole_page(text: str) -> int:
    return sum(len(family.samples) for family in text_string_to_metric_families(text))


def main() -> None:
    text = (ROOT / "tests" / "fixtures" / "vllm-0.32.0-metrics.txt").read_text()
    print(f"vLLM 0.32.0 page: {len(text):,} bytes, {len(text.splitlines())} lines")
    for name, func in (("parse_metrics", parse_metrics), ("whole page parsed", whole_page)):
        runs = 50
        best = min(timeit.repeat(lambda f=func: f(text), number=runs, repeat=5)) / runs
        print(f"{name:<20} {best * 1e3:8.3f} ms per scrape")


if __name__ == "__main__":
    main()
