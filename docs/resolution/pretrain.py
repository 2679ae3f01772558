"""Train the study's drivers ahead of the run, in parallel processes (the same calls as
experiments/resolution.py's load_driver: job.load_model with size= and the scaled attack).

    python docs/resolution/pretrain.py [--dataset=fashion_mnist] cnn:112:r[:epochs] ...
(``r``: robust, ``s``: standard; the data set defaults to mnist5k)."""
import dataclasses
import sys
import time

from lens_jax.studies import job
from lens_jax.adversarial import default_attack
specs, dataset = sys.argv[1:], "mnist5k"
if specs and specs[0].startswith("--dataset="):
    dataset = specs.pop(0).split("=", 1)[1]
for spec in specs:
    model, size, robust, *ep = spec.split(":")
    size = int(size)
    kw = {} if size == 28 else {"size": size, "epochs": int(ep[0]) if ep else None}
    if robust == "r":
        a = default_attack(dataset)
        kw["adversary"] = dataclasses.replace(a, eps=a.eps * size / 28)
    t0 = time.time()
    fn, p, info = job.load_model(model, dataset, progress=True, **kw)
    print(f"DONE {spec} acc {info['test_accuracy']:.4f} {time.time()-t0:.0f}s "
          f"{info['workdir']}", flush=True)
