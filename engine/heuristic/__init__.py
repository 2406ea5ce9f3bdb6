"""Mapping -> heudiconv heuristic (compile), checked without DICOM (validate), then convert.

- :mod:`.plan` joins series, groups and mappings into expected BIDS paths (runs included).
- :mod:`.conditions` picks the fewest stable conditions that separate each group.
- :mod:`.compiler` writes the heuristic source; :mod:`.validate` runs it over the series table.
- :mod:`.convert` runs heudiconv + dcm2niix + bids-validator for one subject/session.
- :mod:`.sidecars` completes the sidecars from the headers and the study metadata file
  (``OUT/sidecar_metadata.json``: what DICOM lacks, e.g. ASL ``M0Type``) per the schema's rules.
"""
