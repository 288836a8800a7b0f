"""What the plausibility screen (``dcim.plausible.Screen``, at the head of the pipeline)
costs: the pipeline's validation of the reference site's readings (the twin's values for
``--hours``, every device's data reading and its ``dcim_poll`` row per 10 s cycle, as the
collector emits them) with and without the screen, into a sink that only counts, best of
``--rounds``; and the screen alone. Reference in the same run: the pipeline without it.
The reference site makes about 300 values/s; the screen's cost per value is printed.

    .venv/bin/python benchmarks/screen.py [--hours 0.25] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import reference_cycles  # noqa: E402 - the same cycles as the ingest benchmark

from dcim.config import SiteConfig  # noqa: E402
from dcim.pipeline import Pipeline  # noqa: E402
from dcim.plausible import Screen  # noqa: E402
from dcim.reading import Reading  # noqa: E402
from dcim.twin.site import paris_chapelle  # noqa: E402


class _Count:
    def __init__(self) -> None:
        self.n = 0

    def append(self, readings: list[Reading]) -> None:
        self.n += len(readings)


def best_of(rounds: int, run: object) -> float:
    assert callable(run)
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=0.25)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg = SiteConfig.model_validate(paris_chapelle())
    cycles = reference_cycles(cfg, args.hours)
    values = sum(len(r.fields) for c in cycles for r in c)
    print(f"{len(cycles)} cycles of the reference site, {values:,} values")
    screen = Screen.of(cfg)

    def pipeline(with_screen: bool) -> None:
        pipe = Pipeline(_Count(), screen=screen if with_screen else None)
        for c in cycles:
            pipe.accept(c)

    t_ref = best_of(args.rounds, lambda: pipeline(False))
    t_scr = best_of(args.rounds, lambda: pipeline(True))
    t_alone = best_of(args.rounds, lambda: [screen(c) for c in cycles])
    print(f"  pipeline without the screen (reference): {values / t_ref:>12,.0f} values/s")
    print(f"  pipeline with the screen:                {values / t_scr:>12,.0f} values/s")
    print(
        f"  the screen alone:                        {values / t_alone:>12,.0f} values/s "
        f"({t_alone / values * 1e6:.2f} us per value; refused: {sum(screen.totals().values())})"
    )


if __name__ == "__main__":
    main()
