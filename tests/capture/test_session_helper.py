"""The session helper's logic, event by event, with a recording stand-in engine (no desktop needed)."""

from __future__ import annotations

import json
import os

import pytest

from agent.capture.keyboard import KeyEvent
from agent.capture.privacy import PrivacyPolicy
from agent.capture.window import ActiveWindow
from agent.notice import notice_text, notice_version
from agent.session import BundleFiles, SessionHelper, read_agent_config, resolve_state_dir
from tests.capture.fake_engine import FakeEngine

NOTES = ActiveWindow("Year 9 English - Notes", "xterm", 100, 1)
SUDO = ActiveWindow("[sudo] password for ayesha.khan:", "xterm", 101, 2)


def helper_with(engine=None, policy=None, **kwargs):
    sent: list[dict] = []
    helper = SessionHelper(engine or FakeEngine(), sent.append, policy or PrivacyPolicy(), "secondary", **kwargs)
    return helper, sent


def type_text(helper: SessionHelper, text: str) -> None:
    for ch in text:
        helper.handle("key", KeyEvent(0.0, "enter" if ch == "\n" else ch, False))


def test_typed_match_carries_window_title_application_and_age_band():
    helper, sent = helper_with()
    helper.handle("window", NOTES)
    type_text(helper, "i want to kill mysellf")
    helper.handle("key", KeyEvent(0.0, "backspace", False))
    helper.handle("key", KeyEvent(0.0, "backspace", False))
    type_text(helper, "f\n")
    (message,) = sent
    assert message["type"] == "match" and message["match"]["category"] == "suicide"
    assert message["match"]["matched"] == "kill myself" and message["context"]
    assert message["window_title"] == NOTES.title and message["application"] == "xterm"
    assert message["age_band"] == "secondary"


def test_keys_in_a_credential_prompt_never_reach_the_engine_or_the_channel():
    engine = FakeEngine()
    helper, sent = helper_with(engine)
    helper.handle("window", NOTES)
    type_text(helper, "hello ")
    helper.handle("window", SUDO)
    type_text(helper, "kill myself Secr3t!\n")
    helper.handle("window", NOTES)
    type_text(helper, "bye\n")
    assert "".join(k for k in engine.fed if len(k) == 1) == "hello bye"
    assert helper.keys_dropped == len("kill myself Secr3t!\n")
    assert sent == []
    assert not any("Secr3t" in text for text, _ in engine.scanned)


def test_a_focused_password_field_drops_keys_and_ends_the_stretch_before_it():
    engine = FakeEngine()
    password = {"focused": False}
    helper, sent = helper_with(engine, password_field_focused=lambda: password["focused"])
    helper.handle("window", NOTES)
    type_text(helper, "user kill")
    password["focused"] = True
    type_text(helper, " myself")
    password["focused"] = False
    type_text(helper, "ok\n")
    assert sent == []  # "kill" and " myself" were never joined
    assert [text for text, _ in engine.scanned] == ["Year 9 English - Notes", "user kill", "ok"]


def test_a_title_is_reported_once_per_distinct_title_and_ends_the_keystroke_stretch():
    helper, sent = helper_with()
    porn = ActiveWindow("Pornhub - Free Porn Videos - Mozilla Firefox", "firefox", 7, 9)
    helper.handle("window", NOTES)
    type_text(helper, "kill myself")  # no Enter: the title change ends the stretch
    helper.handle("window", ActiveWindow(porn.title, "xterm", 100, 1))
    helper.handle("window", NOTES)
    helper.handle("window", porn)
    helper.handle("window", NOTES)
    kinds = [(m["match"]["category"], m["match"]["source"], m["window_title"]) for m in sent]
    assert kinds == [("suicide", "typed", NOTES.title), ("pornography", "title", porn.title)]


def test_admin_excluded_windows_are_not_scanned_at_all():
    engine = FakeEngine()
    policy = PrivacyPolicy.build(applications=["counselling-notes"])
    helper, sent = helper_with(engine, policy)
    helper.handle("window", ActiveWindow("porn kill myself", "counselling-notes", 5, 5))
    type_text(helper, "kill myself\n")
    assert sent == [] and engine.scanned == [] and engine.fed == []


def test_a_new_bundle_is_picked_up_and_a_bad_one_keeps_the_old(tmp_path):
    (tmp_path / "bundle").mkdir()
    files = BundleFiles(tmp_path)
    engines = [FakeEngine("v2")]

    def reload():
        if not engines:
            raise ValueError("signature does not verify")
        return engines.pop()

    helper, _sent = helper_with(FakeEngine("v1"), reload_engine=reload, bundle_files=files)
    helper.check_bundle()
    assert helper.engine.version == "v1"
    (tmp_path / "bundle" / "current.wwb").write_bytes(b"bundle")
    (tmp_path / "bundle" / "current.sig").write_bytes(b"sig")
    helper.check_bundle()
    assert helper.engine.version == "v2"
    (tmp_path / "bundle" / "current.wwb").write_bytes(b"bundle, longer")
    helper.check_bundle()
    assert helper.engine.version == "v2"


def test_configuration_from_agent_json(tmp_path, monkeypatch):
    assert read_agent_config(tmp_path) == {}
    (tmp_path / "agent.json").write_text('{"age_band": "primary", "notice_text": "We check typing."}')
    config = read_agent_config(tmp_path)
    assert config["age_band"] == "primary"
    version = notice_version(config)
    assert notice_text(config) == "We check typing." and version.startswith("sha256:")
    assert notice_version({}) != version
    assert notice_version({**config, "notice_version": "2026-autumn"}) == "2026-autumn"
    (tmp_path / "agent.json").write_text("{broken")
    assert read_agent_config(tmp_path) == {}
    monkeypatch.setenv("WARDWATCH_STATE", str(tmp_path))
    assert resolve_state_dir(tmp_path) == tmp_path
    os.remove(tmp_path / "agent.json")
    assert resolve_state_dir(tmp_path / "nowhere") == tmp_path / "nowhere"


def test_one_alert_per_category_for_a_title_that_hits_several_rules():
    from tests.capture.fake_engine import FakeMatch

    class TwoRuleEngine(FakeEngine):
        def scan(self, text, source="typed"):
            return [FakeMatch("pornography", 3, "porn.site", 1.0, "Pornhub", 0, 7, source, text),
                    FakeMatch("pornography", 3, "porn.words", 0.9, "Porn Videos", 15, 26, source, text),
                    FakeMatch("profanity", 1, "swear", 1.0, "x", 0, 1, source, text)]

    helper, sent = helper_with(TwoRuleEngine())
    helper.handle("window", ActiveWindow("Pornhub - Free Porn Videos", "firefox", 1, 1))
    assert sorted((m["match"]["category"], m["match"]["rule"]) for m in sent) == [
        ("pornography", "porn.site"), ("profanity", "swear")]


def write_bundle(state_dir, version: str, packed: bool = False, tamper: bool = False):
    """A real signed bundle of the shipped libraries where the service keeps it; returns agent.json's values."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from agent.session import packaged_signatures_dir
    from signatures.bundle import build_bundle, pack_signed, sign_bundle

    key = ed25519.Ed25519PrivateKey.generate()
    bundle = build_bundle(packaged_signatures_dir(), version)
    signature = sign_bundle(bundle, key)
    if tamper:
        bundle = bundle[:-1] + bytes([bundle[-1] ^ 1])
    folder = state_dir / "bundle"
    folder.mkdir(exist_ok=True)
    (folder / "current.wwb").write_bytes(pack_signed(bundle, signature) if packed else bundle)
    (folder / "current.sig").write_bytes(signature)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"bundle_public_key": base64.b64encode(der).decode(), "age_band": "secondary"}


def test_the_helper_runs_the_services_bundle_and_refuses_a_corrupt_one(tmp_path, caplog):
    from agent.session import load_engine

    for packed in (False, True):
        config = write_bundle(tmp_path, f"2026.11.{int(packed)}", packed=packed)
        engine = load_engine(tmp_path, "secondary", config)
        assert engine.version == f"2026.11.{int(packed)}"
        assert "suicide" in {m.category for m in engine.scan("i want to kill myself")}
    config = write_bundle(tmp_path, "2026.11.9", tamper=True)
    engine = load_engine(tmp_path, "secondary", config)
    assert engine.version != "2026.11.9"  # the built-in libraries, not the damaged bundle
    assert "could not be used" in caplog.text


@pytest.mark.parametrize("how", ["file writable by others", "folder writable by others", "file of another user"])
def test_the_helper_refuses_a_bundle_someone_other_than_the_service_could_have_written(tmp_path, caplog, how):
    """The service verifies a bundle's signature before installing it; the helper relies on that only while nobody
    but the service could have replaced the file since."""
    from agent.session import load_engine

    config = write_bundle(tmp_path, "2026.11.5")
    bundle = tmp_path / "bundle" / "current.wwb"
    if how == "file writable by others":
        bundle.chmod(0o666)
    elif how == "folder writable by others":
        bundle.parent.chmod(0o777)
    else:
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(bundle, 65534, 65534)
    engine = load_engine(tmp_path, "secondary", config)
    assert engine.version != "2026.11.5"
    assert "UntrustedFile" in caplog.text


def test_matches_from_injected_keys_say_so():
    helper, sent = helper_with()
    helper.handle("window", NOTES)
    for ch in "kill myself\n":
        helper.handle("key", KeyEvent(0.0, "enter" if ch == "\n" else ch, ch == "k"))  # one on-screen key
    type_text(helper, "kill myself\n")
    helper.handle("window", SUDO)  # a new stretch
    helper.handle("window", NOTES)
    type_text(helper, "kill myself\n")
    assert [m.get("injected", False) for m in sent] == [True, True, False]


def test_privacy_settings_written_by_the_service_apply_without_a_restart(tmp_path):
    from agent.session import FileWatch

    config = tmp_path / "agent.json"
    config.write_text("{}")
    engine = FakeEngine()
    helper, sent = helper_with(engine, settings=FileWatch(config),
                               reload_policy=lambda: PrivacyPolicy.from_config(read_agent_config(tmp_path)))
    notes_app = ActiveWindow("Counselling notes", "counselling-notes", 3, 3)
    helper.handle("window", notes_app)
    type_text(helper, "kill myself\n")
    assert len(sent) == 1
    config.write_text('{"privacy": {"excluded_applications": ["counselling-notes"]}, "extra": 1}')
    helper.check_updates()
    type_text(helper, "kill myself\n")
    assert len(sent) == 1 and helper.keys_dropped == len("kill myself\n")
    config.write_text('{"privacy": {"excluded_titles": ["re:(broken"]}}')
    helper.check_updates()  # refused, with the previous settings kept
    type_text(helper, "kill myself\n")
    assert len(sent) == 1


def test_a_new_bundle_that_does_not_verify_keeps_the_running_one(tmp_path):
    from agent.session import load_engine, reload_bundle_engine

    config = write_bundle(tmp_path, "2026.11.1")
    (tmp_path / "agent.json").write_text(json.dumps(config))
    helper, _sent = helper_with(load_engine(tmp_path, "secondary", config),
                                reload_engine=lambda: reload_bundle_engine(tmp_path, "secondary"),
                                bundle_files=BundleFiles(tmp_path))
    bundle = tmp_path / "bundle" / "current.wwb"
    bundle.write_bytes(bundle.read_bytes()[:-1] + b"\x00")  # tampered in place
    helper.check_bundle()
    assert helper.engine.version == "2026.11.1"
