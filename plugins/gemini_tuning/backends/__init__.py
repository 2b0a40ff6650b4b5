"""One module per remote service, behind small contracts (``contract``); the only code that speaks HTTP or calls an
SDK."""
