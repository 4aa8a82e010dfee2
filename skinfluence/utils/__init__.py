"""Internal helpers: scikit-learn compatibility, progress bars, chunking."""
