"""taskit: decorator-first background tasks."""
