"""Recording: an MP4 clip per event, remuxed from a stream's compressed packets, and retention.

- `rules`: `RecordRules` (a stream's `record` settings) and the record dir's checks;
- `buffer`: the packets a stream keeps for its pre-roll and which of them each clip takes (pure);
- `writer`: the thread that muxes a clip into `<event id>.mp4.part`, renames it and indexes it;
- `recorder`: `ClipRecorder`, one per recording stream, joining the three for the capture and
  inference threads;
- `retention`: one per record dir, for every stream recording there: deletes the oldest files
  the media index (stream.media_index) lists, by age, total size and free space.
"""

from lrcn.stream.recording.recorder import ClipRecorder
from lrcn.stream.recording.rules import RecordRules, check_record_dir

__all__ = ["ClipRecorder", "RecordRules", "check_record_dir"]
