"""Media as docs/protocol.md and docs/media.md state it, with aiortc's own WebRTC stack."""

import asyncio
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, run
from zrooms_client import (
    Client,
    Media,
    PatternTrack,
    ToneTrack,
    dominant_frequency,
    read_audio,
    read_video,
    stream_tag,
)


async def member(server, room_id, user_id):
    client = await Client(server.url).connect()
    await client.hello(1)
    reply = await client.login(room_id, user_id, multi_room=True)
    assert reply["code"] == 0, reply
    return client


def sections(sdp):
    """The SDP's media sections, each as its list of lines."""
    parts = re.split(r"\r\n(?=m=)", sdp.strip())
    return [p.split("\r\n") for p in parts[1:]]


def check_answer(sdp):
    """docs/protocol.md: ICE-lite, one host candidate in every m-line, ended, no trickle."""
    assert "a=ice-lite" in sdp
    assert "trickle" not in sdp
    candidates = set()
    for lines in sections(sdp):
        found = [line for line in lines if line.startswith("a=candidate:")]
        assert len(found) == 1, lines
        assert "typ host" in found[0]
        candidates.add(found[0])
        assert "a=end-of-candidates" in lines
    assert len(candidates) == 1


def check_content(frames, stream_id, width, height):
    """Every picture at the published size carrying the stream's tag, counters rising."""
    assert {(w, h) for w, h, _, _ in frames} == {(width, height)}
    assert {tag for _, _, _, tag in frames} == {stream_tag(stream_id)}
    counters = [n for _, _, n, _ in frames]
    assert all(b > a for a, b in zip(counters, counters[1:])), counters


async def publish(client, room_id, stream_id, codec):
    await client.ok("publish", room_id=room_id, stream_id=stream_id)
    media = Media(client)
    video = PatternTrack(stream_id)
    reply = await media.publish(stream_id, video=video, audio=ToneTrack(), codecs=[codec])
    assert reply["code"] == 0, reply
    check_answer(reply["body"]["sdp"])
    return media


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_a_published_pattern_and_tone_reach_a_player(server, codec):
    async def scenario():
        room, stream = f"media-{codec}", f"py-{codec}"
        alice = await member(server, room, "alice")
        await publish(alice, room, stream, codec)
        bob = await member(server, room, "bob")
        play = await bob.ok("play", room_id=room, stream_id=stream)
        assert play == {"kind": "play", "available": True}
        reply, video, audio = await Media(bob).play(stream)
        assert reply["code"] == 0, reply
        check_answer(reply["body"]["sdp"])
        assert f"{codec}/90000" in reply["body"]["sdp"]
        check_content(await read_video(video, 30), stream, 320, 180)
        samples, rate = await read_audio(audio, 1.0)
        assert abs(dominant_frequency(samples, rate) - 440) < 5
        assert 4000 < int(abs(samples[rate // 2 :]).max()) < 16000
        # The publisher stops: the player is told the stream is gone (reason 1).
        await alice.ok("unpublish", room_id=room, stream_id=stream)
        gone = await bob.push(lambda p: p["type"] == "stream_unavailable")
        assert gone["stream_id"] == stream and gone["reason"] == 1
        await alice.close()
        await bob.close()

    run(scenario())


def test_a_player_without_the_publishers_codec_is_told(server):
    async def scenario():
        room, stream = "media-mismatch", "py-h264-only"
        alice = await member(server, room, "alice")
        await publish(alice, room, stream, "H264")
        bob = await member(server, room, "bob")
        await bob.ok("play", room_id=room, stream_id=stream)
        reply, _, audio = await Media(bob).play(stream, codecs=["VP8"])
        assert reply["code"] == 0, reply
        failed = await bob.push(lambda p: p["type"] == "play_failed")
        assert failed == {
            "type": "play_failed",
            "stream_id": stream,
            "kind": "video",
            "code": 1004080,
        }
        # Audio, whose codec both sides have, still flows.
        samples, rate = await read_audio(audio, 0.5)
        assert abs(dominant_frequency(samples, rate) - 440) < 5
        await alice.close()
        await bob.close()

    run(scenario())


def test_refused_offers_say_why(server):
    async def scenario():
        alone = await Client(server.url).connect()
        await alone.hello(1)
        media = Media(alone)
        media.pc.addTransceiver("audio", direction="recvonly")
        offer = await media.pc.createOffer()
        await media.pc.setLocalDescription(offer)
        sdp = media.pc.localDescription.sdp
        entry = {"mid": "0", "stream_id": "s", "kind": "audio", "direction": "recv"}
        not_in_room = await alone.request("media_offer", sdp=sdp, tracks=[entry])
        assert not_in_room["code"] == 1000002
        assert (await alone.login("media-refusals", "alone"))["code"] == 0
        # The tracks are an array; a map is refused.
        as_map = await alone.request("media_offer", sdp=sdp, tracks={"0": entry})
        assert as_map["code"] == 1000017
        # A recv track of a stream not played, a send track of a stream not published.
        assert (await alone.request("media_offer", sdp=sdp, tracks=[entry]))["code"] == 1004025
        send = dict(entry, direction="send")
        assert (await alone.request("media_offer", sdp=sdp, tracks=[send]))["code"] == 1003025
        # Without BUNDLE: 1000017 and a message saying why.
        await alone.ok("play", room_id="media-refusals", stream_id="s")
        unbundled = "".join(
            line + "\r\n" for line in sdp.split("\r\n") if line and not line.startswith("a=group:")
        )
        refused = await alone.request("media_offer", sdp=unbundled, tracks=[entry])
        assert refused["code"] == 1000017
        assert "BUNDLE" in refused.get("message", ""), refused
        # The same offer with its BUNDLE group is answered.
        fine = await alone.request("media_offer", sdp=sdp, tracks=[entry])
        assert fine["code"] == 0, fine
        check_answer(fine["body"]["sdp"])
        await alone.close()

    run(scenario())


def test_our_engines_pattern_reads_as_documented(server):
    """The SDK's default source, played by aiortc and read with docs/media.md's description."""

    async def scenario():
        env = dict(os.environ, ZROOMS_SERVER=server.url)
        script = ROOT / "__test__" / "fixtures" / "engine-script.mjs"
        engine = await asyncio.create_subprocess_exec(
            "node", str(script), "hold", "sdk-user", env=env, stdout=subprocess.PIPE
        )
        try:
            line = await asyncio.wait_for(engine.stdout.readline(), 60)
            assert line.decode().strip() == "ready", line
            room, stream = "script-room1", "sdk-user-stream"
            viewer = await member(server, room, "viewer")
            await viewer.ok("play", room_id=room, stream_id=stream)
            reply, video, audio = await Media(viewer).play(stream)
            assert reply["code"] == 0, reply
            check_content(await read_video(video, 20), stream, 640, 360)
            samples, rate = await read_audio(audio, 1.0)
            assert abs(dominant_frequency(samples, rate) - 440) < 5
            await viewer.close()
        finally:
            engine.kill()
            await engine.wait()

    run(scenario())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
