"""The streaming engine `batch` and `evaluate` both drive: a folder run and an evaluation
are one pipeline with different consumers, and the decoding hides behind the forward passes.

- `workers`: default decode workers and render threads from the usable cores.
- `decode`: decoding in DataLoader workers; a bad file is its item's error, never raised.
- `device`: batched forward passes that halve the batch on a CUDA out-of-memory error.
- `distributed`: torchrun shards and the gather of picklable per-rank results.
- `stream`: the loop, decode -> consumer (which runs the forward passes), with a clean shutdown.

The engine knows nothing of figures or metrics: its consumers do.
"""
