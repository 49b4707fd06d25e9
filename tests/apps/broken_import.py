"""Start-up error fixture: importing this module fails."""

raise ImportError("broken_import refuses to load")
