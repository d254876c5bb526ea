"""stream-guard: a real-time monitor for synthetic speech.

The runtime is torch-free: numpy, onnxruntime and the I/O libraries only.
"""

__version__ = "0.1.0"
