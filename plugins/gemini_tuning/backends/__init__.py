"""One module per remote service; the only code that speaks HTTP or calls an SDK."""
