"""The wire contract shared by agent and collector: generated protobuf code plus the identity rule."""
