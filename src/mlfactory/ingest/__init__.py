"""Getting source data into the store: readers, the incremental loader, validation."""
