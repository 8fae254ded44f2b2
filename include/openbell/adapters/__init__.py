"""Adapters: venue SDKs behind the contracts of :mod:`openbell.ports`."""
