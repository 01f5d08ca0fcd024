"""Real cross-device federated learning: an aggregator and clients over TLS gRPC."""
