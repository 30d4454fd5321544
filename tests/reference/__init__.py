"""Slow, obvious NumPy versions of the JIT kernels, for comparison in tests."""
