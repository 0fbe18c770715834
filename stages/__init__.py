"""Every stage family registers itself on import; the engine imports this package only."""

from stages import exact, readers, text

__all__ = ["exact", "readers", "text"]
