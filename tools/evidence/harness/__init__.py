"""The evidence harness: what `lrcn bench`, `lrcn soak`, `lrcn faults` and the measurement scripts
(bench_scrape, bench_sinks, bench_encoders, camera_capacity, streaming_accuracy) share.

- `recorder`: a real ZeroMQ subscriber in a thread that keeps every message with its arrival
  time (`Recorder`), and the soak's running tallies over one (`Monitor`);
- `procfs`: what /proc says about a process and the machine: CPU, resident memory, threads, load;
- `servers`: the processes a run stands up: ffmpeg stream servers, RTSP cameras, `lrcn serve`,
  and the default video they play;
- `scoring`: interleaved timing rounds and the sums the tools' verdicts are made of.
- `script`: the shell of a measurement script that serves in rounds: shared arguments, the
  result printed and saved, errors as one line and exit status 2.

Each module imports only the runtime (`lrcn.stream`) and tools/evidence/ffmpeg_server.py and checkout.py, never a tool.
"""
