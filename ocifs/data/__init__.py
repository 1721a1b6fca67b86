"""File data: open files, staged copies, prefetching reads, the local data cache."""
