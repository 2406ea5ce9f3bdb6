"""Header scan of DICOM trees: discover -> fast header read (cached) -> series table."""
