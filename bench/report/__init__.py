"""Reports: tables and charts built from a run directory."""
