"""Hot reload (a real file change on disk, picked up by the watcher of a live runtime) and
canary rollouts (a share of new threads on the new version, sticky by thread), on both
backends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from langchain_core.messages import SystemMessage

from skills.catalog import load_registry
from skills.context import Actor, ThreadRef
from skills.outcomes import Reply
from skills.registry import SkillRegistry, canary_bucket
from skills.reload import SkillReloader
from skills.runtime import Runtime
from tests.fakes.chat import ScriptedChatModel, reply
from tests.skills.conftest import RuntimeKit

CAROL = Actor(user_id="U0CAROL", name="carol", tz="Europe/Lisbon")


def spec(version: str, *, words: str, rollout: str = "", extra: str = "") -> str:
    return (
        "name: notes\n"
        f"version: '{version}'\n"
        "description: Answer questions about the team's notes.\n"
        f"instructions: Answer in the {words} style.\n"
        f"{rollout}{extra}"
    )


def thread(ts: str) -> ThreadRef:
    return ThreadRef(team="T0", channel="C0GENERAL", thread_ts=ts)


def system_prompt(model: ScriptedChatModel, call: int) -> str:
    return "".join(str(m.text) for m in model.calls[call] if isinstance(m, SystemMessage))


async def versions_of(kit: RuntimeKit, ref: ThreadRef) -> list[str | None]:
    return [run.skill_version for run in await kit.runs().for_thread(ref.thread_id)]


async def until(
    check: Callable[[], bool], *, poke: Callable[[], None], timeout: float = 30
) -> None:
    """Wait for ``check``; ``poke`` (re-writing the same file) covers a watcher that was not
    listening yet when the file was first written."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_poke = loop.time() + 3
    while not check():
        if loop.time() > deadline:
            raise AssertionError("the change was not picked up in time")
        if loop.time() > next_poke:
            poke()
            next_poke = loop.time() + 3
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def watching(reloader: SkillReloader) -> AsyncIterator[None]:
    task = asyncio.create_task(reloader.watch())
    await asyncio.sleep(0.3)  # let the watcher start listening
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def live(kit: RuntimeKit, folder: Path, model: ScriptedChatModel) -> tuple[Runtime, SkillReloader]:
    loaded = load_registry([folder], env={})
    assert not loaded.issues, loaded.issues
    runtime = kit.runtime(lambda _name: model, registry=loaded.registry)
    reloader = SkillReloader(
        registry=loaded.registry, dirs=[folder], env={}, on_swap=[runtime.forget_stale]
    )
    reloader.start_with(loaded)
    return runtime, reloader


async def test_a_file_change_is_live_and_a_turn_in_flight_finishes_on_its_version(
    kit: RuntimeKit, tmp_path: Path
) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text(spec("1", words="first"))
    model = ScriptedChatModel([reply(f"answer {i}") for i in range(6)], delay=0.0)
    runtime, reloader = live(kit, tmp_path, model)
    registry = runtime.registry
    async with watching(reloader):
        one = await runtime.run(thread=thread("1.0"), message="hi", actor=CAROL, skill="notes")
        assert isinstance(one, Reply)
        assert "first style" in system_prompt(model, 0)

        # a valid edit: live on the next turn, within seconds
        generation = registry.generation
        edit = spec("2", words="second")
        path.write_text(edit)
        await until(lambda: registry.generation > generation, poke=lambda: path.write_text(edit))
        assert reloader.status.outcome == "applied"
        assert reloader.status.changed == ("notes v1 → v2",)
        await runtime.run(thread=thread("2.0"), message="hi", actor=CAROL, skill="notes")
        assert "second style" in system_prompt(model, 1)
        assert await versions_of(kit, thread("2.0")) == ["2"]

        # a turn in flight when the file changes finishes on the version it started with
        model.delay = 1.5
        turn = asyncio.create_task(
            runtime.run(thread=thread("3.0"), message="hi", actor=CAROL, skill="notes")
        )
        await asyncio.sleep(0.5)
        generation = registry.generation
        edit = spec("3", words="third")
        path.write_text(edit)
        await until(lambda: registry.generation > generation, poke=lambda: path.write_text(edit))
        assert not turn.done()
        assert isinstance(await turn, Reply)
        assert "second style" in system_prompt(model, 2)
        assert await versions_of(kit, thread("3.0")) == ["2"]
        model.delay = 0.0
        await runtime.run(thread=thread("4.0"), message="hi", actor=CAROL, skill="notes")
        assert "third style" in system_prompt(model, 3)

        # an invalid edit is rejected with file:line; the previous version keeps serving
        generation = registry.generation
        bad = spec("4", words="fourth", extra="toolz: []\n")
        path.write_text(bad)
        await until(
            lambda: reloader.status.outcome == "rejected", poke=lambda: path.write_text(bad)
        )
        assert registry.generation == generation
        [issue] = reloader.status.issues
        assert str(issue).startswith(f"{path}:5 toolz: unknown key")
        assert reloader.status.kept == ("notes v3",)
        await runtime.run(thread=thread("5.0"), message="hi", actor=CAROL, skill="notes")
        assert "third style" in system_prompt(model, 4)
        assert await versions_of(kit, thread("5.0")) == ["3"]

        # a new file adds a skill
        other = tmp_path / "more" / "standup-notes.yaml"
        other.parent.mkdir()
        text = spec("1", words="short").replace("name: notes", "name: standup-notes")
        other.write_text(text)
        await until(lambda: "standup-notes" in registry, poke=lambda: other.write_text(text))
        assert reloader.status.outcome == "partial"  # notes.yaml is still broken

        # deleting a file removes its skill
        other.unlink()
        await until(lambda: "standup-notes" not in registry, poke=lambda: None)


def two_versions(folder: Path, share: str) -> SkillRegistry:
    (folder / "notes.yaml").write_text(spec("1", words="old"))
    (folder / "notes-v2.yaml").write_text(
        spec("2", words="new", rollout=f"rollout: {{canary: {share}}}\n")
    )
    loaded = load_registry([folder], env={})
    assert not loaded.issues, loaded.issues
    return loaded.registry


async def test_canary_serves_a_share_of_new_threads_and_never_switches_a_thread(
    kit: RuntimeKit, tmp_path: Path
) -> None:
    registry = two_versions(tmp_path, "30%")
    assert registry.get("notes").version == "1"
    canary = registry.canary("notes")
    assert canary is not None and canary.version == "2" and canary.canary == 30
    model = ScriptedChatModel([reply("ok")] * 200)
    runtime = kit.runtime(lambda _name: model, registry=registry)

    threads = [thread(f"{i}.5") for i in range(40)]
    for ref in threads:
        await runtime.run(thread=ref, message="hi", actor=CAROL, skill="notes")
    first = {ref.thread_id: (await versions_of(kit, ref))[0] for ref in threads}
    on_canary = sum(1 for v in first.values() if v == "2")
    assert 5 <= on_canary <= 20, on_canary  # ~30% of 40
    for ref in threads:  # by the thread's hash: the same answer in any process
        expected = "2" if canary_bucket("notes", ref.thread_id) < 30 else "1"
        assert first[ref.thread_id] == expected
    # the version's own instructions reached the model
    prompts = [system_prompt(model, i) for i in range(40)]
    assert sum("new style" in p for p in prompts) == on_canary

    # raising the share moves no conversation: each keeps the version it started on
    (tmp_path / "notes-v2.yaml").write_text(
        spec("2", words="new", rollout="rollout: {canary: 100%}\n")
    )
    raised = load_registry([tmp_path], env={})
    registry.replace(raised.skills, raised.canaries)
    for ref in threads:
        await runtime.run(thread=ref, message="and then?", actor=CAROL, skill="notes")
        assert await versions_of(kit, ref) == [first[ref.thread_id]] * 2
    # ...while every new conversation now starts on the new version
    for i in range(10):
        ref = thread(f"{i}.9")
        await runtime.run(thread=ref, message="hi", actor=CAROL, skill="notes")
        assert await versions_of(kit, ref) == ["2"]

    # a replica built from the same files (another process) keeps the same threads
    replica = kit.runtime(lambda _name: model, registry=load_registry([tmp_path], env={}).registry)
    for ref in threads[:10]:
        await replica.run(thread=ref, message="still there?", actor=CAROL, skill="notes")
        assert (await versions_of(kit, ref))[-1] == first[ref.thread_id]


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (spec("2", words="x"), "is already defined in"),  # no rollout: a plain duplicate
        (spec("1", words="x", rollout="rollout: {canary: 5%}\n"), "two different `version:`"),
    ],
)
def test_two_files_with_one_name_need_versions_and_a_rollout(
    tmp_path: Path, second: str, message: str
) -> None:
    (tmp_path / "a.yaml").write_text(spec("1", words="old"))
    (tmp_path / "b.yaml").write_text(second)
    loaded = load_registry([tmp_path], env={})
    [issue] = loaded.issues
    assert issue.file == str(tmp_path / "b.yaml") and issue.line is not None
    assert message in issue.message
    assert loaded.registry.canary("notes") is None


def test_a_bad_share_is_a_spec_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(spec("2", words="x", rollout="rollout: {canary: 150%}\n"))
    [issue] = load_registry([tmp_path], env={}).issues
    assert issue.line == 5 and issue.field == "rollout.canary"


async def test_a_kubernetes_configmap_update_is_picked_up(tmp_path: Path) -> None:
    """A ConfigMap volume: files are symlinks into ``..data``, which is swapped at once."""
    mount = tmp_path / "skills"
    mount.mkdir()
    first = mount / "..2026_12_01_10_00_00.1"
    first.mkdir()
    (first / "notes.yaml").write_text(spec("1", words="first"))
    (mount / "..data").symlink_to(first.name)
    (mount / "notes.yaml").symlink_to("..data/notes.yaml")
    loaded = load_registry([mount], env={})
    assert loaded.registry.get("notes").version == "1"
    reloader = SkillReloader(registry=loaded.registry, dirs=[mount], env={})

    def update(version: str) -> None:
        fresh = mount / f"..2026_12_01_10_00_0{version}.1"
        fresh.mkdir(exist_ok=True)
        (fresh / "notes.yaml").write_text(spec(version, words="new"))
        (mount / "..data_tmp").unlink(missing_ok=True)
        (mount / "..data_tmp").symlink_to(fresh.name)
        (mount / "..data_tmp").rename(mount / "..data")  # what the kubelet does

    async with watching(reloader):
        update("2")
        await until(lambda: loaded.registry.get("notes").version == "2", poke=lambda: None)
    assert [s.name for s in loaded.registry].count("notes") == 1  # ..data is not read twice
