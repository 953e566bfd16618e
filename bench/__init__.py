"""beau_tf's benchmarks, each run as `python -m bench.<name>` from the
repository root; `bench.harness` is what they share and `bench/RESULTS.md`
what they measured."""
