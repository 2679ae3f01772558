"""What of the full resolution study has run, and what the rest would cost.

The full grid (the issue's): MNIST (``mnist5k``) at 28, 56, 112 px and Fashion-MNIST at 28 and
112 px; the standard and robust CNN drivers; fixed and live; every default domain; L2 = 2, 4, 6
with 30 sources per pair (90 per cell); target specificity on 3 per pair (9 per cell).  Every
cell file under docs/resolution counts, whichever run wrote it; a cell is done at a budget when
some file holds 90 sources at that budget.  The estimate for a missing cell is 90 times the
median recorded time per source of the cells with at least 30 sources of the same data set,
size and mode (compiling included, so small cells overstate it); recorded times are mostly
beside another run, so they overstate a run alone by up to about two.

    python docs/resolution/progress.py            # summary per data set, size and mode
    python docs/resolution/progress.py --missing  # and every missing cell
"""
import collections
import glob
import json
import statistics
import sys
from pathlib import Path

from lens_jax.studies import job

GRID = {"mnist5k": (28, 56, 112), "fashion_mnist": (28, 112)}
DRIVERS, MODES, BUDGETS = ("cnn", "cnn+robust"), ("fixed", "live"), (2.0, 4.0, 6.0)
N, N_SPEC = 90, 9                            # sources per cell, specificity sources per cell
ROOT = Path(__file__).parent

sources = collections.defaultdict(int)       # (dataset, size, driver, mode, domain, B) -> most
spec = collections.defaultdict(int)          # (dataset, size, driver, mode, domain) -> most
per_source = collections.defaultdict(list)   # (dataset, size, mode) -> seconds per source
for path in map(Path, glob.glob(str(ROOT / "**" / "cells" / "*.json"), recursive=True)):
    dataset = path.parent.parent.name
    size, driver, mode, domain = path.stem.split("_", 3)
    key = (dataset, int(size.removesuffix("px")), driver, mode, domain)
    cell = json.loads(path.read_text())
    per_b = collections.Counter(float(r["B"]) for r in cell["records"])
    for b, n in per_b.items():
        sources[key + (b,)] = max(sources[key + (b,)], n)
    spec[key] = max(spec[key], sum("specificity" in r for r in cell["records"]))
    if max(per_b.values()) >= 30:
        per_source[key[:2] + (mode,)].append(cell["seconds"] / max(per_b.values()))

domains = job.default_domains()
total_done = total_cells = 0
missing_s, rows, missing = 0.0, [], []
for dataset, sizes in GRID.items():
    for size in sizes:
        for mode in MODES:
            cells = [(dataset, size, d, mode, dom) for d in DRIVERS for dom in domains]
            done = {b: sum(sources[c + (b,)] >= N for c in cells) for b in BUDGETS}
            spec_done = sum(spec[c] >= N_SPEC for c in cells)
            est = N * statistics.median(per_source[(dataset, size, mode)] or [float("nan")])
            todo = [c for c in cells if any(sources[c + (b,)] < N for b in BUDGETS)]
            todo_spec = [c for c in cells if spec[c] < N_SPEC and c not in todo]
            missing_s += est * (len(todo) + len(todo_spec))
            total_done += sum(done.values()) + spec_done
            total_cells += len(cells) * (len(BUDGETS) + 1)
            rows.append(f"| {dataset} | {size} | {mode} | " + " | ".join(
                f"{done[b]}/{len(cells)}" for b in BUDGETS)
                + f" | {spec_done}/{len(cells)} | {est:,.0f} s | {len(todo) + len(todo_spec)} |")
            missing += [(c, [b for b in BUDGETS if sources[c + (b,)] < N], spec[c] < N_SPEC)
                        for c in cells if c in todo or c in todo_spec]

print("| data set | size | mode | L2 = 2 | L2 = 4 | L2 = 6 | specificity (3 per pair) "
      "| a cell (est.) | cells to run |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
print("\n".join(rows))
print(f"\n{total_done} of {total_cells} (cell, budget) entries done; the missing cells would take "
      f"about {missing_s / 3600:.1f} h at the recorded times (one per missing cell and budget "
      "set; specificity counted as a cell).  Not in this count: the drivers' training "
      "recipes (the 112-px Fashion-MNIST cells so far use drivers trained on 4,000 garments).")
if "--missing" in sys.argv:
    for (dataset, size, driver, mode, domain), bs, sp in missing:
        print(f"  {dataset} {size}px {driver} {mode} {domain}: "
              f"L2 {','.join(f'{b:g}' for b in bs) or '-'}" + (" + specificity" if sp else ""))
