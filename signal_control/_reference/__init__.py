"""Plain-Python references of the Numba kernels (private): obvious, slow loops.

Each module mirrors a public wrapper (``timing``, ``preemption``, ``aggregate``) one
pair, one intersection, one phase at a time, so the tests can compare every kernel
with it (``np.testing.assert_allclose``) and ``experiments.timing_kernels`` can time
the kernel against it. Production code never imports this package.
"""
