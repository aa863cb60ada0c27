"""`gst:` sources through GStreamer (placeholder until the backend lands)."""
