"""The recorder's packet buffer alone, on the packets of a real H.264 file (the `h264` fixture:
25 fps, a keyframe every second, B-frames), demuxed with PyAV: what it keeps, where a clip
starts, and which packets a clip takes. The oracle is the file's own packet list."""

import itertools
from pathlib import Path

import av
import pytest

from lrcn.stream.recording.buffer import ClipSpan, PacketBuffer, Verdict
from tests.live_servers import FFMPEG
from tests.media import FPS

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")]


@pytest.fixture(scope="module")
def demuxed(h264):
    """The file's video packets in decode order, with its time base in seconds."""
    container = av.open(str(h264))
    video = container.streams.video[0]
    packets = [packet for packet in container.demux(video) if packet.size]
    yield packets, float(video.time_base)
    container.close()


def seconds(packet, time_base: float) -> float:
    return packet.pts * time_base


def test_the_file_has_what_the_rules_are_about(demuxed):
    packets, time_base = demuxed
    keys = [seconds(p, time_base) for p in packets if p.is_keyframe]
    assert keys == [float(k) for k in range(20)], "a keyframe every second"
    latest = itertools.accumulate((p.pts for p in packets), max)
    assert any(p.pts < before for p, before in zip(packets[1:], latest)), "B-frames: decoded after a later frame"


def test_the_pre_roll_reaches_back_to_the_last_keyframe_at_or_before_its_horizon(demuxed):
    packets, time_base = demuxed
    buffer = PacketBuffer(keep_s=2.5)
    for n, packet in enumerate(packets):
        kept = buffer.add(packet, time_base)
        assert kept is not None and kept.packet is packet and not kept.jump
        horizon = buffer.newest_t - 2.5
        keys_so_far = [seconds(p, time_base) for p in packets[: n + 1] if p.is_keyframe]
        expected_first = max([k for k in keys_so_far if k <= horizon], default=keys_so_far[0])
        assert buffer.kept[0].key and buffer.kept[0].t == expected_first, (n, buffer.kept[0].t, expected_first)
        assert [k.packet for k in buffer.kept] == packets[packets.index(buffer.kept[0].packet) : n + 1], "contiguous"
        assert [k.t for k in buffer.keys] == [k for k in keys_so_far if k >= expected_first]
        assert buffer.bytes == sum(k.size for k in buffer.kept)
    assert 2.5 <= buffer.span_s < 2.5 + 1.0 + 1 / FPS


def test_a_clip_starts_at_the_keyframe_before_its_pre_roll_or_the_oldest_kept(demuxed):
    packets, time_base = demuxed
    buffer = PacketBuffer(keep_s=3.0)
    assert buffer.start_for(5.0) is None, "nothing kept yet"
    for packet in packets[: 10 * FPS]:  # to 10 s: keyframes 6..9 kept (the horizon is at about 7 s)
        buffer.add(packet, time_base)
    assert [k.t for k in buffer.keys] == [6.0, 7.0, 8.0, 9.0]
    assert buffer.start_for(8.5).t == 8.0
    assert buffer.start_for(8.0).t == 8.0
    assert buffer.start_for(9.9).t == 9.0
    assert buffer.start_for(2.0).t == 6.0, "the pre-roll no longer reaches back: the oldest kept"
    first = buffer.start_for(7.2)
    assert [k.packet for k in buffer.since(first)] == packets[packets.index(first.packet) : 10 * FPS]


def test_without_a_keyframe_yet_packets_are_kept_by_time(demuxed):
    packets, time_base = demuxed
    buffer = PacketBuffer(keep_s=0.4)
    for packet in packets[1:FPS]:  # the first keyframe left out
        buffer.add(packet, time_base)
    assert not buffer.keys and buffer.start_for(0.5) is None
    # Trimmed from the front, in decode order: a B-frame behind the front may be shown a little earlier.
    assert buffer.kept and buffer.kept[0].t >= buffer.newest_t - 0.4
    assert buffer.kept[0].packet is not packets[1] and buffer.kept[-1].packet is packets[FPS - 1], "older ones went"


def test_over_its_byte_cap_the_oldest_gops_go_whole(demuxed):
    packets, time_base = demuxed
    gop_bytes = [sum(p.size for p in packets[n * FPS : (n + 1) * FPS]) for n in range(20)]
    cap = int(3.5 * max(gop_bytes))
    buffer = PacketBuffer(keep_s=60.0, max_bytes=cap)  # the window alone would keep everything
    for packet in packets:
        buffer.add(packet, time_base)
        assert buffer.bytes <= cap and buffer.kept[0].key
    assert 3 <= len(buffer.keys) <= 4, [k.t for k in buffer.keys]
    assert buffer.kept[-1].packet is packets[-1]
    assert buffer.bytes == sum(k.size for k in buffer.kept)

    one_gop = PacketBuffer(keep_s=60.0, max_bytes=gop_bytes[0] // 2)  # no whole GOP fits: it starts over
    for packet in packets[:FPS]:
        one_gop.add(packet, time_base)
    assert one_gop.bytes <= gop_bytes[0] // 2


def test_a_timestamp_jump_begins_a_new_timeline(demuxed, h264: Path):
    packets, time_base = demuxed
    buffer = PacketBuffer(keep_s=2.0)
    for packet in packets[: 5 * FPS]:
        buffer.add(packet, time_base)
    with av.open(str(h264)) as again:  # the same file from its start: decode times go back 5 s
        first = next(p for p in again.demux(video=0) if p.size)
        kept = buffer.add(first, time_base)
        assert kept.jump and list(buffer.kept) == [kept] and buffer.newest_t == 0.0


def offered(span: ClipSpan, packets, time_base: float, buffer: PacketBuffer) -> tuple[list, object]:
    """Offer packets in decode order as the recorder does: the packets taken, and the one it ended at."""
    taken = []
    for packet in packets:
        kept = buffer.add(packet, time_base)
        verdict = span.offer(kept)
        if verdict is Verdict.END:
            return taken, kept
        if verdict is Verdict.TAKE:
            taken.append(kept)
    return taken, None


def test_a_clip_takes_from_its_keyframe_to_its_end_with_no_hole_despite_b_frames(demuxed):
    packets, time_base = demuxed
    frame_pts = sorted(p.pts for p in packets)  # presentation order: the frames a player shows
    start = next(n for n, p in enumerate(packets) if p.is_keyframe and seconds(p, time_base) == 3.0)
    # The pre-roll's first keyframe is offered first, as `start` does; before it a packet is skipped.
    assert ClipSpan(60.0).offer(PacketBuffer(1.0).add(packets[start + 1], time_base)) is Verdict.SKIP
    b_frames_at_the_end = 0
    for n in range(2 * FPS):  # an end at each frame of two seconds: it falls on I, P and B-frames
        span = ClipSpan(max_clip_s=60.0)
        span.until = until = 6.5 + n / FPS  # its event ended post_s before
        taken, end = offered(span, packets[start:], time_base, PacketBuffer(keep_s=60.0))
        assert taken[0].key and taken[0].t == 3.0
        shown = sorted(k.pts for k in taken)
        first = frame_pts.index(shown[0])
        assert shown == frame_pts[first : first + len(shown)], (until, "a hole: a frame between its first and last")
        assert max(k.t for k in taken) >= until - 1 / FPS, (until, "every frame shown before the end is in")
        assert end is not None and end.pts > max(shown), (until, "it ends at the first packet shown after its last")
        assert max(k.t for k in taken) < until + 0.5, (until, "and not much later")
        past = [k for k in taken if k.d >= until]
        b_frames_at_the_end += bool(past) and any(k.pts < max(shown) for k in past)
    assert b_frames_at_the_end, "some ends take B-frames decoded after the end, to fill the hole"


def test_a_clip_is_capped_at_max_clip_s_from_its_first_packet(demuxed):
    packets, time_base = demuxed
    frame_pts = sorted(p.pts for p in packets)
    span = ClipSpan(max_clip_s=3.0)  # its event never ends
    start = next(n for n, p in enumerate(packets) if p.is_keyframe and seconds(p, time_base) == 2.0)
    taken, end = offered(span, packets[start:], time_base, PacketBuffer(keep_s=60.0))
    assert end is not None and end.t >= 5.0 and span.cap == 5.0
    shown = sorted(k.pts for k in taken)
    assert shown == frame_pts[frame_pts.index(shown[0]) :][: len(shown)], "no hole"
    assert all(k.t < 5.0 for k in taken) and max(k.t for k in taken) >= 5.0 - 4 / FPS
