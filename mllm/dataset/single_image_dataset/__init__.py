"""Single-image datasets, one module per source; importing registers them."""
from .rec import RECComputeMetrics, RECDataset

__all__ = ['RECComputeMetrics', 'RECDataset']
