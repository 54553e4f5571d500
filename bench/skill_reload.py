"""Hot reload of skill specs: how long a saved edit takes to go live, and what a reload
costs with many specs.

Two tables:

* **edit → live**: a ``SkillReloader`` watches a folder (as ``serve`` does); each round
  rewrites one spec with a new ``version:`` and measures the time until the registry
  serves it (watchfiles debounce included). Reported as p50 / p95 / max over the rounds.
* **reload cost**: ``load_skills`` + the swap, with N specs in the folder (each with two
  HTTP tools), median of repeats: the work done off the event loop, then on it.

    .venv/bin/python bench/skill_reload.py [--rounds 20] [--specs 10,50,200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skills.catalog import load_registry, load_skills  # noqa: E402
from skills.reload import SkillReloader  # noqa: E402

SPEC = """\
name: {name}
version: '{version}'
description: Look up orders and refund them after approval ({name}).
instructions: |
  You help the payments support team with orders and refunds.
tools:
  - use: slack.read_thread
  - name: lookup_order
    description: Fetch an order by id.
    http:
      method: GET
      url: "https://crm.example/orders/{{order_id}}"
    parameters:
      order_id: {{type: string, pattern: "^[0-9]+$"}}
  - name: issue_refund
    description: Refund an order.
    http:
      method: POST
      url: "https://crm.example/refunds"
      json: {{order_id: "{{order_id}}", amount: "{{amount}}"}}
    parameters:
      order_id: {{type: string}}
      amount: {{type: number, minimum: 0, maximum: 5000}}
    approval:
      approvers: {{users: [U0CAROL]}}
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered)) - 1)]


async def edit_to_live(rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "notes.yaml"
        path.write_text(SPEC.format(name="notes", version="0"))
        loaded = load_registry([folder], env={})
        reloader = SkillReloader(registry=loaded.registry, dirs=[folder], env={})
        task = asyncio.create_task(reloader.watch())
        await asyncio.sleep(0.5)
        took: list[float] = []
        try:
            for i in range(1, rounds + 1):
                start = time.perf_counter()
                path.write_text(SPEC.format(name="notes", version=str(i)))
                while loaded.registry.get("notes").version != str(i):
                    if time.perf_counter() - start > 30:
                        raise RuntimeError(f"round {i}: the edit never went live")
                    await asyncio.sleep(0.005)
                took.append(time.perf_counter() - start)
                await asyncio.sleep(0.2)
        finally:
            task.cancel()
        return took


def reload_cost(count: int, repeats: int = 5) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(count):
            (folder / f"skill{i}.yaml").write_text(SPEC.format(name=f"skill{i}", version="1"))
        loaded = load_registry([folder], env={})
        reloader = SkillReloader(registry=loaded.registry, dirs=[folder], env={})
        loads, swaps = [], []
        for r in range(repeats):
            (folder / "skill0.yaml").write_text(SPEC.format(name="skill0", version=str(r + 2)))
            start = time.perf_counter()
            fresh = load_skills([folder], env={})
            middle = time.perf_counter()
            reloader.apply(fresh)
            end = time.perf_counter()
            loads.append(middle - start)
            swaps.append(end - middle)
        return statistics.median(loads), statistics.median(swaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--specs", default="10,50,200")
    args = parser.parse_args()

    took = asyncio.run(edit_to_live(args.rounds))
    print(f"edit → live ({args.rounds} edits, watchfiles debounce 400 ms)")
    print(
        f"  p50 {_pct(took, 0.5) * 1000:7.0f} ms   p95 {_pct(took, 0.95) * 1000:7.0f} ms"
        f"   max {max(took) * 1000:7.0f} ms"
    )
    print()
    print(f"{'specs':>6} {'load (off loop)':>16} {'swap (on loop)':>15}")
    for count in (int(c) for c in args.specs.split(",")):
        load, swap = reload_cost(count)
        print(f"{count:>6} {load * 1000:>13.1f} ms {swap * 1000:>12.2f} ms")


if __name__ == "__main__":
    main()
