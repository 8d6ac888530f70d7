"""A client of the zrooms wire protocol, written from docs/protocol.md and docs/media.md alone.

It shares nothing with our engine or web page: the WebSocket is the `websockets` package's,
the peer connection is aiortc's (its own ICE, DTLS, SRTP and codecs), and the test pattern is
drawn and read from the description in docs/media.md. Every wait has a deadline; nothing
sleeps to let something happen.
"""

import asyncio
import fractions
import json
import math

import av
import numpy as np
import websockets
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

DEADLINE = 20.0


class Closed(Exception):
    """The server closed the connection."""


class Client:
    """One WebSocket session: requests with ids, replies matched by id, pushes kept in order."""

    def __init__(self, url):
        self.url = url
        self.ws = None
        self.next_id = 0
        self.pending = {}
        self.pushes = []
        # Replies whose id no request waits for (the server must not send any).
        self.stray_replies = []
        self.received = 0
        self.changed = asyncio.Condition()
        self.closed = asyncio.Event()
        self.reader = None
        self.heartbeat = None
        self.media = None

    async def connect(self):
        self.ws = await websockets.connect(self.url, max_size=256 * 1024)
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self):
        try:
            async for text in self.ws:
                frame = json.loads(text)
                self.received += 1
                if frame.get("type") == "reply":
                    future = self.pending.pop(frame["id"], None)
                    if future and not future.done():
                        future.set_result(frame)
                    else:
                        self.stray_replies.append(frame)
                else:
                    async with self.changed:
                        self.pushes.append(frame)
                        self.changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(Closed())
            async with self.changed:
                self.changed.notify_all()

    def _take_id(self):
        self.next_id += 1
        return self.next_id

    async def send(self, frame):
        """Sends a frame as given (for the tests of malformed or out-of-order frames)."""
        await self.ws.send(json.dumps(frame))

    async def request(self, kind, request_id=None, **fields):
        """Sends a request and returns its reply frame (`code`, `body`, `message`)."""
        rid = self._take_id() if request_id is None else request_id
        future = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        await self.send({"id": rid, "type": kind, **fields})
        return await asyncio.wait_for(future, DEADLINE)

    async def ok(self, kind, **fields):
        reply = await self.request(kind, **fields)
        assert reply["code"] == 0, f"{kind} answered {reply}"
        return reply.get("body")

    async def hello(self, app_id, app_sign=""):
        body = await self.ok("hello", version=1, app_id=app_id, app_sign=app_sign)
        self.app_id, self.session_id, self.resume_key = app_id, body["session_id"], body["resume_key"]
        self.heartbeat = asyncio.create_task(self._ping())
        return body

    async def _ping(self):
        # docs/protocol.md: a ping every 5 s carrying the frames received.
        while not self.closed.is_set():
            try:
                await asyncio.wait_for(self.closed.wait(), 5.0)
            except asyncio.TimeoutError:
                try:
                    await self.request("ping", received=self.received)
                except (Closed, websockets.ConnectionClosed, asyncio.TimeoutError):
                    return

    async def resume(self, old):
        """Resumes `old`'s session on this new connection (docs/protocol.md, Sessions):
        the frames after those `old` received follow the reply."""
        hello = await self.request(
            "hello",
            request_id=old.next_id + 1,
            version=1,
            app_id=old.app_id,
            resume={"session_id": old.session_id, "key": old.resume_key, "received": old.received},
        )
        # The resumed reply is not one of the session's frames; ids go on from the old ones.
        self.received = old.received + (0 if hello["body"]["resumed"] else 1)
        self.next_id = old.next_id + 1
        self.app_id, self.session_id = old.app_id, old.session_id
        self.resume_key = hello["body"]["resume_key"]
        self.heartbeat = asyncio.create_task(self._ping())
        return hello["body"]

    def drop(self):
        """Loses the connection without a close frame, as a network failure would."""
        self.ws.transport.abort()

    async def login(self, room_id, user_id, user_name=None, **config):
        config.setdefault("user_status_notify", True)
        user = {"user_id": user_id, "user_name": user_name or user_id}
        return await self.request("login", room_id=room_id, user=user, config=config)

    async def push(self, match, deadline=DEADLINE):
        """The next push not yet taken for which `match(push)` holds; earlier ones that do
        not match stay for later calls."""

        async def first():
            async with self.changed:
                while True:
                    for i, frame in enumerate(self.pushes):
                        if match(frame):
                            return self.pushes.pop(i)
                    if self.closed.is_set():
                        raise Closed()
                    await self.changed.wait()

        return await asyncio.wait_for(first(), deadline)

    def pushes_of(self, kind, room_id=None):
        """Pushes of a kind (and room) received so far and not taken."""
        return [
            p
            for p in self.pushes
            if p["type"] == kind and (room_id is None or p.get("room_id") == room_id)
        ]

    async def close(self):
        if self.heartbeat:
            self.heartbeat.cancel()
        if self.media:
            await self.media.pc.close()
        if self.ws:
            await self.ws.close()
        if self.reader:
            await self.reader


def codecs_named(kind, names):
    caps = RTCRtpSender.getCapabilities(kind).codecs
    # aiortc offers two H.264 profiles; the SFU forwards the constrained baseline one.
    return [
        c
        for c in caps
        if c.mimeType.split("/")[1] in names + ["rtx"]
        and (c.mimeType != "video/H264" or c.parameters.get("profile-level-id") == "42e01f")
    ]


class Media:
    """The one peer connection of a client, the client always offering."""

    def __init__(self, client):
        self.client = client
        client.media = self
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.tracks = []

    def _add(self, stream_id, kind, direction, track=None, codecs=None):
        if track is not None:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
        else:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
        if codecs:
            transceiver.setCodecPreferences(codecs_named(kind, codecs))
        return transceiver, {"stream_id": stream_id, "kind": kind, "direction": direction}

    async def negotiate(self, added, **extra):
        """Offers the peer's current m-lines; `added` are the new transceivers and their
        track entries. Returns the reply (the answer is applied when the code is 0)."""
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        for transceiver, entry in added:
            entry["mid"] = transceiver.mid
            self.tracks.append(entry)
        sdp = extra.pop("sdp", self.pc.localDescription.sdp)
        tracks = extra.pop("tracks", self.tracks)
        reply = await self.client.request("media_offer", sdp=sdp, tracks=tracks, **extra)
        if reply["code"] == 0:
            body = reply["body"]
            assert body["kind"] == "media_answer", body
            await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
        return reply

    async def publish(self, stream_id, video=None, audio=None, codecs=None):
        added = []
        if video is not None:
            added.append(self._add(stream_id, "video", "send", track=video, codecs=codecs))
        if audio is not None:
            added.append(self._add(stream_id, "audio", "send", track=audio))
        return await self.negotiate(added)

    async def play(self, stream_id, codecs=None):
        """Adds receive m-lines for the stream; returns (reply, video track, audio track)."""
        video = self._add(stream_id, "video", "recv", codecs=codecs)
        audio = self._add(stream_id, "audio", "recv")
        reply = await self.negotiate([video, audio])
        return reply, video[0].receiver.track, audio[0].receiver.track


# The test pattern of docs/media.md ("The test pattern and tone, exactly").


def stream_tag(stream_id):
    h = 0x811C9DC5
    for byte in stream_id.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return (h ^ (h >> 16)) & 0xFFFF


def block_size(width):
    return max(4, width // 20) & ~1


def draw_pattern(width, height, n, tag):
    """An I420 frame (as a yuv420p ndarray) carrying counter `n` and `tag` as documented."""
    b = block_size(width)
    y = np.full((height, width), 100, dtype=np.uint8)
    y += (np.arange(width, dtype=np.uint16) * 60 // width).astype(np.uint8)[None, :]
    uv = np.full((height // 2, width), 128, dtype=np.uint8)
    for row, value in ((1, n & 0xFFFF), (3, tag)):
        for bit in range(16):
            on = (value >> (15 - bit)) & 1
            x0 = b + bit * b
            y[row * b : (row + 1) * b, x0 : x0 + b] = 235 if on else 16
    return np.concatenate([y, uv])


def read_row(luma, row):
    height, width = luma.shape
    b = block_size(width)
    if (row + 1) * b > height or 17 * b > width:
        return None
    value = 0
    for bit in range(16):
        cx, cy = b + bit * b + b // 2, row * b + b // 2
        mean = int(luma[cy - 1 : cy + 1, cx - 1 : cx + 1].astype(np.uint32).sum()) // 4
        value = (value << 1) | (1 if mean > 128 else 0)
    return value


class PacedTrack(MediaStreamTrack):
    """A source on a media clock: its item at media time `t` seconds is made at start + t."""

    def __init__(self):
        super().__init__()
        self.start = None

    async def until(self, media_time):
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        due = self.start + media_time
        if due > loop.time():
            await asyncio.sleep(due - loop.time())


class PatternTrack(PacedTrack):
    """Video: the documented pattern at `fps`, frame n carrying counter n."""

    kind = "video"

    def __init__(self, stream_id, width=320, height=180, fps=15):
        super().__init__()
        self.tag, self.width, self.height, self.fps = stream_tag(stream_id), width, height, fps
        self.n = 0

    async def recv(self):
        await self.until(self.n / self.fps)
        frame = av.VideoFrame.from_ndarray(
            draw_pattern(self.width, self.height, self.n, self.tag), format="yuv420p"
        )
        frame.pts = self.n * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.n += 1
        return frame


class ToneTrack(PacedTrack):
    """Audio: a sine of `frequency` Hz at 30 % of full scale, 48 kHz mono, 20 ms a frame."""

    kind = "audio"

    def __init__(self, frequency=440.0):
        super().__init__()
        self.frequency = frequency
        self.samples = 0

    async def recv(self):
        await self.until(self.samples / 48000)
        t = (self.samples + np.arange(960)) / 48000
        pcm = (np.sin(2 * math.pi * self.frequency * t) * 0.3 * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, 48000)
        self.samples += 960
        return frame


async def read_video(track, frames, deadline=DEADLINE):
    """Decodes `frames` pictures; returns [(width, height, counter, tag)]."""

    async def collect():
        out = []
        while len(out) < frames:
            frame = await track.recv()
            luma = frame.to_ndarray(format="yuv420p")[: frame.height]
            out.append((frame.width, frame.height, read_row(luma, 1), read_row(luma, 3)))
        return out

    return await asyncio.wait_for(collect(), deadline)


async def read_audio(track, seconds, deadline=DEADLINE):
    """Collects `seconds` of decoded audio (first channel); returns (samples, rate)."""

    async def collect():
        chunks, total, rate = [], 0, 48000
        while total < seconds * rate:
            frame = await track.recv()
            rate = frame.sample_rate
            array = frame.to_ndarray()
            if frame.format.is_planar:
                pcm = array[0]
            else:
                pcm = array.reshape(-1, len(frame.layout.channels))[:, 0]
            chunks.append(pcm)
            total += len(pcm)
        return np.concatenate(chunks), rate

    return await asyncio.wait_for(collect(), deadline)


def dominant_frequency(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])
