"""Train the study's drivers ahead of the run, in parallel processes (the same calls as
experiments/resolution.py's load_driver: job.load_model with size= and the scaled attack)."""
import dataclasses
import sys
import time

from lens_jax.studies import job
from lens_jax.adversarial import DEFAULT_ATTACKS
for spec in sys.argv[1:]:
    model, size, robust, *ep = spec.split(":")
    size = int(size)
    kw = {} if size == 28 else {"size": size, "epochs": int(ep[0]) if ep else None}
    if robust == "r":
        a = DEFAULT_ATTACKS["mnist5k"]
        kw["adversary"] = dataclasses.replace(a, eps=a.eps * size / 28)
    t0 = time.time()
    fn, p, info = job.load_model(model, "mnist5k", progress=True, **kw)
    print(f"DONE {spec} acc {info['test_accuracy']:.4f} {time.time()-t0:.0f}s "
          f"{info['workdir']}", flush=True)
