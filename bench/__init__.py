"""beau_tf's benchmarks, each run as `python -m bench.<name>` from the
repository root; `bench.harness` is what they share and `bench/RESULTS.md`
what they measured."""

# The modules of bench/ that the benches share; every other one is a bench.
SHARED_MODULES = frozenset(
    {
        "__init__",
        "errors",
        "harness",
        "indexing",
        "mask_scores",
        "poolings",
        "scoring",
    }
)
