"""Configurations, teacher labels, HDF5 storage (docs/data-format.md) and graph batches."""
