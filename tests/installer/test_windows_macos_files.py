"""The Windows and macOS installers cannot run here; check what can be checked without those systems."""

import ast
import plistlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WINDOWS = REPO / "installer" / "windows"
MACOS = REPO / "installer" / "macos"


def test_pyinstaller_spec_and_entry_points_are_valid_python():
    for path in (WINDOWS / "wardwatch-agent.spec", WINDOWS / "agent_entry.py", WINDOWS / "service_entry.py"):
        compile(path.read_text(), str(path), "exec")
    spec = ast.parse((WINDOWS / "wardwatch-agent.spec").read_text())
    scripts = {node.value for node in ast.walk(spec) if isinstance(node, ast.Constant) and
               isinstance(node.value, str) and node.value.endswith(".py")}
    assert scripts == {"agent_entry.py", "service_entry.py"}
    assert all((WINDOWS / script).exists() for script in scripts)
    # The frozen agent must not drag in the collector's web and database stack.
    assert '"collector"' in (WINDOWS / "wardwatch-agent.spec").read_text()


def test_the_windows_service_runs_the_same_agent_service_class():
    tree = ast.parse((WINDOWS / "service_entry.py").read_text())
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert ("agent.service", "AgentService") in imported
    from agent.service import AgentService  # the class the frozen service imports exists with that contract

    assert hasattr(AgentService, "run") and "stopping" in AgentService.__init__.__code__.co_names


def _ps_parameters(script: str) -> dict[str, str]:
    block = script[script.index("param("):script.index("\n)\n")]
    return {name: kind for kind, name in re.findall(r"\[(\w+)\]\$(\w+)", block)}


def test_powershell_installer_has_the_documented_parameters():
    script = (WINDOWS / "install.ps1").read_text()
    params = _ps_parameters(script)
    assert params == {"EnrolmentString": "string", "Upgrade": "switch", "Uninstall": "switch",
                      "UninstallCode": "string", "AgeBand": "string", "Source": "string", "InstallDir": "string",
                      "StateDir": "string", "NoStart": "switch"}
    docs = (REPO / "docs" / "installing.md").read_text()
    for name in params:
        assert f"-{name}" in docs, f"docs/installing.md does not describe -{name}"
    # The uninstall asks the collector before it removes anything, and the helper starts at every logon.
    assert script.index("'uninstall', '--code'") < script.index("sc.exe delete")
    assert "New-ScheduledTaskTrigger -AtLogOn" in script
    assert script.count("{") == script.count("}") and script.count("(") == script.count(")")


def test_launchd_plists_and_pppc_profile_parse_and_agree():
    daemon = plistlib.loads((MACOS / "org.wardwatch.agent.plist").read_bytes())
    helper = plistlib.loads((MACOS / "org.wardwatch.session.plist").read_bytes())
    profile = plistlib.loads((MACOS / "wardwatch-pppc.mobileconfig").read_bytes())
    assert daemon["ProgramArguments"][-1] == "run" and daemon["KeepAlive"] is True
    assert helper["ProgramArguments"][-1] == "session" and helper["LimitLoadToSessionType"] == ["Aqua"]
    # Both run the signed app bundle's executable, so the TCC grant (by bundle id) covers the helper.
    assert daemon["ProgramArguments"][0] == helper["ProgramArguments"][0]
    assert ".app/Contents/MacOS/" in helper["ProgramArguments"][0]
    state = daemon["ProgramArguments"][daemon["ProgramArguments"].index("--state") + 1]
    assert helper["ProgramArguments"][helper["ProgramArguments"].index("--state") + 1] == state
    [tcc] = profile["PayloadContent"]
    assert tcc["PayloadType"] == "com.apple.TCC.configuration-profile-policy"
    [accessibility] = tcc["Services"]["Accessibility"]
    assert accessibility["Authorization"] == "Allow" and accessibility["IdentifierType"] == "bundleID"
    assert accessibility["Identifier"] in accessibility["CodeRequirement"]
    assert len({profile["PayloadUUID"], tcc["PayloadUUID"]}) == 2
