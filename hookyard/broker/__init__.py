"""Local Pub/Sub push emulator: the `Broker` and its Flask publish endpoint (`http`)."""

from hookyard.broker.broker import Broker

__all__ = ["Broker"]
