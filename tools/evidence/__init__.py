"""The evidence: the benches (`lrcn bench`, `lrcn soak`, `lrcn faults` and the bench_* scripts),
capacity searches, probes and studies, the test servers (ffmpeg, Mosquitto, RTSP), the harness
they share, and the generators of the docs' tables and schemas (report.py, schemas.py), which
write into the checkout they lie in."""
