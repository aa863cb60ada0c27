"""`lrcn stream-accuracy`: the command (streaming_accuracy.py), its joined test video
(joined_streams.py), the live and offline runs (stream_live.py, stream_replay.py), their scoring
(stream_scoring.py) and the tables of a result (stream_results.py)."""
