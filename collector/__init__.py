"""WardWatch collector: receives signed alerts over mTLS gRPC, stores them once, serves the review console."""

__version__ = "0.1.0"
