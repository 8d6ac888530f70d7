"""Signaling as docs/protocol.md states it: hello, request ids, login, rooms, messages."""

import asyncio

import pytest
from conftest import APP_SIGN, run
from zrooms_client import Client


async def connected(server, app_id=1, app_sign=""):
    client = await Client(server.url).connect()
    await client.hello(app_id, app_sign)
    return client


def in_room(kind, room_id):
    return lambda p: p["type"] == kind and p.get("room_id") == room_id


def test_a_request_before_hello_is_refused_and_the_connection_closed(server):
    async def scenario():
        client = await Client(server.url).connect()
        reply = await client.request("login", room_id="r", user={"user_id": "u", "user_name": "u"})
        assert reply["code"] == 1000001
        await asyncio.wait_for(client.closed.wait(), 10)

    run(scenario())


@pytest.mark.parametrize(
    "hello, code",
    [
        ({"version": 2, "app_id": 1}, 1000017),
        ({"version": 1, "app_id": 99}, 1001004),
        ({"version": 1, "app_id": 2, "app_sign": "cd" * 32}, 1001005),
    ],
)
def test_a_refused_hello_is_answered_then_the_connection_closes(server, hello, code):
    async def scenario():
        client = await Client(server.url).connect()
        reply = await client.request("hello", **hello)
        assert reply["code"] == code, reply
        await asyncio.wait_for(client.closed.wait(), 10)

    run(scenario())


def test_hello_starts_a_session(server):
    async def scenario():
        client = await Client(server.url).connect()
        body = await client.ok("hello", version=1, app_id=2, app_sign=APP_SIGN)
        assert body["kind"] == "hello"
        assert body["resumed"] is False
        assert body["session_id"] and body["resume_key"] and body["server_version"]
        await client.close()

    run(scenario())


def test_request_ids_that_do_not_grow(server):
    async def scenario():
        client = await connected(server)
        assert (await client.login("ids-room", "ids-user"))["code"] == 0
        last = client.next_id
        # A recent id is skipped without a reply; the next request's reply is the barrier.
        await client.send({"id": last, "type": "ping", "received": 0})
        reply = await client.request("ping", received=0)
        assert reply["code"] == 0 and reply["id"] == last + 1
        assert client.stray_replies == []
        # An id below the highest that the session never sent is refused.
        other = await connected(server)
        await other.ok("ping", request_id=1000, received=0)
        other.next_id = 1000
        stale = await other.request("ping", request_id=5, received=0)
        assert stale["code"] == 1000017
        # A frame with an id that does not parse as a request is answered 1000017.
        bad = await other.request("login", room_id="", user={"user_id": "x"})
        assert bad["code"] == 1000017
        await client.close()
        await other.close()

    run(scenario())


def test_multi_room_membership_and_per_room_messages(server):
    async def scenario():
        alice, bob, carol = [await connected(server) for _ in range(3)]
        assert (await bob.login("conf-a", "bob"))["code"] == 0
        assert (await carol.login("conf-b", "carol"))["code"] == 0
        reply_a = await alice.login("conf-a", "alice", multi_room=True)
        assert reply_a["code"] == 0
        body = reply_a["body"]
        assert body["kind"] == "login" and body["room_session_id"]
        assert [u["user_id"] for u in body["users"]] == ["bob"]
        assert body["streams"] == [] and body["online_count"] == 2
        joined = await bob.push(in_room("user_update", "conf-a"))
        assert joined["update"] == "add"
        assert joined["users"] == [{"user_id": "alice", "user_name": "alice"}]
        reply_b = await alice.login("conf-b", "alice", multi_room=True)
        assert [u["user_id"] for u in reply_b["body"]["users"]] == ["carol"]
        await carol.push(in_room("user_update", "conf-b"))

        # One user per session across its rooms; no more rooms than the app allows (3).
        other = await alice.login("conf-c", "mallory", multi_room=True)
        assert other["code"] == 1002018
        assert (await alice.login("conf-c", "alice", multi_room=True))["code"] == 0
        assert (await alice.login("conf-d", "alice", multi_room=True))["code"] in (1002001, 1002037)

        # Broadcast ids count per room; each room's members get that room's messages only.
        ids_a = [
            (await alice.ok("broadcast", room_id="conf-a", message=f"a{i}"))["message_id"]
            for i in range(2)
        ]
        assert ids_a == [1, 2]
        id_b = (await alice.ok("broadcast", room_id="conf-b", message="b0"))["message_id"]
        assert id_b == 1
        got = []
        while len(got) < 2:
            push = await bob.push(in_room("broadcast", "conf-a"))
            got += [(m["message_id"], m["message"], m["from"]["user_id"]) for m in push["messages"]]
        assert got == [(1, "a0", "alice"), (2, "a1", "alice")]
        first_b = await carol.push(lambda p: p["type"] == "broadcast")
        assert first_b["room_id"] == "conf-b"
        assert [m["message"] for m in first_b["messages"]] == ["b0"]
        # Carol's room-b message came after room a's two were accepted: nothing of room a
        # reached her before it, nor can it now.
        assert not [p for p in carol.pushes if p.get("room_id") == "conf-a"]

        # Bob's broadcast reaches alice in room a only; the sender never hears itself.
        await bob.ok("broadcast", room_id="conf-a", message="from bob")
        heard = await alice.push(lambda p: p["type"] == "broadcast")
        assert heard["room_id"] == "conf-a" and heard["messages"][0]["from"]["user_id"] == "bob"

        # Barrage ids are strings; a custom command goes to the named users only.
        barrage = await alice.ok("barrage", room_id="conf-b", message="hi b")
        assert isinstance(barrage["message_id"], str) and barrage["message_id"]
        await carol.push(in_room("barrage", "conf-b"))
        await alice.ok("custom_command", room_id="conf-a", command="to bob", to=["bob"])
        command = await bob.push(in_room("custom_command", "conf-a"))
        assert command["from"]["user_id"] == "alice" and command["command"] == "to bob"

        # Room extra info: one key per room, pushed to the room's other members.
        await alice.ok("set_room_extra_info", room_id="conf-b", key="topic", value="maths")
        info = await carol.push(in_room("room_extra_info", "conf-b"))
        assert info["infos"][0]["key"] == "topic" and info["infos"][0]["value"] == "maths"
        assert info["infos"][0]["update_user"]["user_id"] == "alice"
        second = await alice.request("set_room_extra_info", room_id="conf-b", key="k2", value="v")
        assert second["code"] == 1002017

        # A stream published in room a shows up in room a only, with its extra info.
        await alice.ok("publish", room_id="conf-a", stream_id="alice-cam", extra_info="e1")
        added = await bob.push(in_room("stream_update", "conf-a"))
        assert added["update"] == "add"
        assert added["streams"][0]["stream_id"] == "alice-cam"
        assert added["streams"][0]["extra_info"] == "e1"
        # Leaving room a deletes her stream there (reason 1) and tells bob she left.
        await alice.ok("logout", room_id="conf-a")
        deleted = await bob.push(in_room("stream_update", "conf-a"))
        assert deleted["update"] == "delete"
        assert deleted["deleted"] == [{"stream_id": "alice-cam", "code": 1}]
        left = await bob.push(in_room("user_update", "conf-a"))
        assert left["update"] == "delete"
        # She is still in room b: her message there is delivered.
        await alice.ok("barrage", room_id="conf-b", message="still here")
        await carol.push(in_room("barrage", "conf-b"))
        assert not [p for p in carol.pushes if p["type"] == "stream_update"]
        gone = await alice.request("broadcast", room_id="conf-a", message="x")
        assert gone["code"] in (1000002, 1009005)
        for c in (alice, bob, carol):
            await c.close()

    run(scenario())


def test_single_room_app_and_rates(server):
    async def scenario():
        dave = await connected(server, 2, APP_SIGN)
        erin = await connected(server, 2, APP_SIGN)
        assert (await dave.login("solo", "dave"))["code"] == 0
        assert (await erin.login("solo", "erin"))["code"] == 0
        assert (await dave.login("solo-2", "dave", multi_room=True))["code"] == 1002036
        # App 2's broadcast_per_user is 0.01 a second: one now, the next refused.
        await dave.ok("broadcast", room_id="solo", message="one")
        assert (await dave.request("broadcast", room_id="solo", message="two"))["code"] == 1009015
        assert (await dave.request("broadcast", room_id="solo", message=""))["code"] == 1009001
        long = "x" * 1025
        assert (await dave.request("barrage", room_id="solo", message=long))["code"] == 1009002
        # A goodbye (close frame) removes dave at once: erin sees him leave.
        await dave.close()
        left = await erin.push(in_room("user_update", "solo"))
        assert left["update"] == "delete" and left["users"][0]["user_id"] == "dave"
        await erin.close()

    run(scenario())


def test_a_dropped_connection_resumes_its_session(server):
    async def scenario():
        frank, grace = await connected(server), await connected(server)
        assert (await frank.login("resume-room", "frank"))["code"] == 0
        assert (await grace.login("resume-room", "grace"))["code"] == 0
        await frank.push(in_room("user_update", "resume-room"))
        frank.drop()
        await asyncio.wait_for(frank.closed.wait(), 10)
        # While frank is away, grace's message is kept for him.
        await grace.ok("broadcast", room_id="resume-room", message="while away")
        back = await Client(server.url).connect()
        body = await back.resume(frank)
        assert body["kind"] == "hello" and body["resumed"] is True
        missed = await back.push(in_room("broadcast", "resume-room"))
        assert missed["messages"][0]["message"] == "while away"
        # Still in the room: his message reaches grace, who never saw him leave.
        await back.ok("broadcast", room_id="resume-room", message="back")
        await grace.push(in_room("broadcast", "resume-room"))
        assert not grace.pushes_of("user_update", "resume-room")
        # A wrong key starts a new session instead.
        forged = await Client(server.url).connect()
        back.resume_key = "0" * len(back.resume_key)
        assert (await forged.resume(back))["resumed"] is False
        for c in (back, grace, forged):
            await c.close()

    run(scenario())
