"""The recorder's packet buffer: which compressed packets a stream keeps for clips, and which of
them each clip takes. Pure: no threads, no disk, no lock (the recorder holds one around it).

Time. Everything is in stream seconds, the clock of the frame times the capture yields (PyAV
`frame.time`, pts * time_base), so a packet's time is its pts in seconds and the buffer works
the same whether the source is paced, read faster than real time, or bunched by the network.
A step in decode time longer than `JUMP_FORWARD_S` forward or `JUMP_BACK_S` back (a timestamp
reset, a file read again) starts a new timeline: the buffer begins again with that packet.

Pre-roll. The buffer keeps the packets of the last `keep_s` seconds of stream time, and always
back to a keyframe at or before that horizon (a clip must start at a keyframe to decode), at
most `max_bytes` of them. A clip starts at the last keyframe at or before `event_start - pre_s`
(`start_for`), or at the oldest kept keyframe if the pre-roll no longer reaches back that far,
or at the next keyframe if none is kept yet.

End (`ClipSpan`). A clip whose event ended at `t` runs until a packet whose decode time is at
or after `t + post_s` (`until`): as decode times never exceed presentation times and only grow,
every frame shown before that moment is in the clip, with all the frames it references (and,
with B-frames, a frame or two after it, the references of those before it). Past that packet
the clip still takes the packets shown before its latest frame (B-frames decoded after a later
P-frame), so it has no hole; its end is the first packet shown after its latest frame. A clip
never runs past `max_clip_s` from its first packet: at the first packet shown at or after that,
it ends, event or not (with B-frames, the few frames shown just before the cap may be left
out, never one in the middle).
"""

from __future__ import annotations

import enum
import itertools
import time
from collections import deque
from collections.abc import Iterator

JUMP_FORWARD_S = 10.0  # a longer step forward in decode time starts a new timeline
JUMP_BACK_S = 1.0  # so does a step back longer than this; shorter ones are nudged by the writer
PREROLL_MAX_BYTES = 64 * 2**20  # per stream: a cap for sources with very long GOPs


class Kept:
    """A fed packet with what the threads need of it, read once in the capture thread: the
    writer later changes the packet's own fields when it muxes it."""

    __slots__ = ("packet", "seq", "pts", "dts", "duration", "t", "d", "key", "wall", "size", "jump")

    def __init__(self, packet, seq: int, pts: int, dts: int, time_base: float):
        self.packet, self.seq, self.pts, self.dts = packet, seq, pts, dts
        self.duration = packet.duration
        self.t, self.d = pts * time_base, dts * time_base  # presentation and decode time, seconds
        self.key: bool = packet.is_keyframe
        self.wall = time.time()
        self.size: int = packet.size
        self.jump = False  # its decode time jumped: the buffer began again with it


class PacketBuffer:
    """The packets of one connection's timeline, oldest first (see the module docstring)."""

    def __init__(self, keep_s: float, max_bytes: int = PREROLL_MAX_BYTES):
        self.keep_s, self.max_bytes = keep_s, max_bytes
        self.kept: deque[Kept] = deque()
        self.keys: deque[Kept] = deque()  # the keyframes among them
        self.bytes = 0
        self.newest_t: float | None = None  # the latest presentation time yet
        self.last_d: float | None = None  # the decode time of the packet added last
        self._seq = itertools.count()

    def add(self, packet, time_base: float) -> Kept | None:
        """Keep a packet (in decode order) of a stream whose time base is `time_base` seconds,
        and let go what the pre-roll no longer needs; None for a packet with no time at all."""
        pts, dts = packet.pts, packet.dts
        if pts is None:
            if dts is None:
                return None
            pts = dts
        elif dts is None:
            dts = pts
        kept = Kept(packet, next(self._seq), pts, dts, time_base)
        last_d = self.last_d
        if last_d is not None and not -JUMP_BACK_S <= kept.d - last_d <= JUMP_FORWARD_S:
            self.clear()
            kept.jump = True
        self.last_d = kept.d
        newest_t = self.newest_t
        if newest_t is None or kept.t > newest_t:
            newest_t = self.newest_t = kept.t
        self.kept.append(kept)
        self.bytes += kept.size
        if kept.key:
            self.keys.append(kept)
        self._trim(newest_t)
        return kept

    def clear(self) -> None:
        """A new timeline (a new connection, a jump): nothing kept belongs to it."""
        self.kept.clear()
        self.keys.clear()
        self.bytes = 0
        self.newest_t = self.last_d = None

    def start_for(self, from_t: float) -> Kept | None:
        """The keyframe a clip wanting frames from `from_t` starts at (None: none kept yet)."""
        for key in reversed(self.keys):
            if key.t <= from_t:
                return key
        return self.keys[0] if self.keys else None

    def since(self, first: Kept) -> Iterator[Kept]:
        """The kept packets from `first` on, in decode order."""
        return itertools.islice(self.kept, first.seq - self.kept[0].seq, None)

    def wall_at(self, t: float) -> float | None:
        """The Unix time the latest packet shown at or before `t` arrived."""
        return next((kept.wall for kept in reversed(self.kept) if kept.t <= t), None)

    @property
    def span_s(self) -> float:
        """How far back the pre-roll reaches from the newest packet, in stream seconds."""
        return self.newest_t - self.kept[0].t if self.kept and self.newest_t is not None else 0.0

    def _trim(self, newest_t: float) -> None:
        horizon = newest_t - self.keep_s
        keys, kept = self.keys, self.kept
        while len(keys) >= 2 and keys[1].t <= horizon:
            keys.popleft()
        while self.bytes > self.max_bytes and len(keys) >= 2:  # over the cap: the oldest GOPs go
            keys.popleft()
            while kept[0].seq < keys[0].seq:
                self.bytes -= kept.popleft().size
        if self.bytes > self.max_bytes:  # one keyframe in all that (intra refresh?): start over
            kept.clear()
            keys.clear()
            self.bytes = 0
        # Nothing before the first kept keyframe can be decoded; with no keyframe yet, keep by time.
        while kept and (kept[0].seq < keys[0].seq if keys else kept[0].t < horizon):
            self.bytes -= kept.popleft().size


class Verdict(enum.Enum):
    TAKE = "take"  # the clip takes this packet
    SKIP = "skip"  # not this one (before the clip's first keyframe)
    END = "end"  # the clip ends before this packet


TAKE, SKIP, END = Verdict.TAKE, Verdict.SKIP, Verdict.END  # plain names: read for every packet


class ClipSpan:
    """Which packets one clip takes, offered in decode order (see "End" in the module docstring)."""

    __slots__ = ("max_clip_s", "until", "cap", "keyed", "last_pts", "closing_before")

    def __init__(self, max_clip_s: float):
        self.max_clip_s = max_clip_s
        self.until: float | None = None  # decode time it ends at; None while its event is open
        self.cap: float | None = None  # presentation time it ends at whatever the event does
        self.keyed = False  # its first packet (a keyframe) is taken
        self.last_pts: int | None = None  # the latest presentation time among the packets taken
        # Past its end: packets still shown before `last_pts` (B-frames that fill a hole) are taken
        self.closing_before: int | None = None

    def offer(self, kept: Kept) -> Verdict:
        """Does the clip take this packet (the next in decode order)? Once END, it takes no more."""
        if self.cap is not None and kept.t >= self.cap:
            # The first packet shown at the cap ends it: every earlier one in decode order is shown
            # before it, so the clip is never longer than max_clip_s; B-frames decoded after it
            # reference it and would be shown last, so leaving them out leaves no hole.
            return END
        if self.closing_before is None and self.until is not None and kept.d >= self.until:
            self.closing_before = self.last_pts if self.last_pts is not None else kept.pts
        if self.closing_before is not None and kept.pts >= self.closing_before:
            # Without B-frames this is the packet that reached the end; with them, a frame decoded
            # after one shown later than itself (I0 P4 B2 B1 B3 P8 B6 B5 | B7) is taken first, so
            # the clip has no hole before its last frame.
            return END
        if not self.keyed:
            if not kept.key:
                return SKIP
            self.keyed = True
            self.cap = kept.t + self.max_clip_s
        if self.last_pts is None or kept.pts > self.last_pts:
            self.last_pts = kept.pts
        return TAKE
