"""Research reproductions and experiments built on the library; the core never imports them.

- :mod:`.hmc` — C-HMCNN(h) on the ARFF HMC benchmarks (FunCat, GO, Diatoms, ImCLEF) and the
  rare-node variants of Xu et al. 2026 on them (``benchmarks/hmc.py`` is the front end).

They ship in the wheel so that the benchmarks and the tests that pin the reproductions run from an
installed package; ``tests/test_layers.py`` checks that no core module imports them.
"""
