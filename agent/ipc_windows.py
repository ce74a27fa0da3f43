"""The session channel on Windows: loopback TCP, a per-boot secret, and the OS's word on who is at each end.

Windows has no Unix socket with peer credentials, so (selected by agent/ipc.py when sys.platform is win32):

- The service listens on 127.0.0.1 on a port the OS picks, and writes `{"port", "secret"}` to
  `<state>\\ipc\\session.endpoint`. The secret is new each time the service starts (so at least once per boot).
  The file's ACL is set before the secret is written: LocalSystem and Administrators full control, the
  INTERACTIVE group (users signed in at the console or over Remote Desktop, hence their session helpers) read
  only, nothing inherited. Services, network logons and other machines cannot read it.
- A helper's first line is `{"type": "auth", "secret": ...}`; a connection without it is closed unread. The secret
  only keeps out code that is not an interactive user's; it is not the identity. Who the peer is comes from the
  OS: GetExtendedTcpTable gives the process owning the client's end of the connection, and its token's user
  (OpenProcessToken, GetTokenInformation(TokenUser), LookupAccountSidW) is the user named on the alert.
  asyncio is imported where the server uses it, as in agent/ipc.py: the helper never runs a server.
- The helper asks the same of the other end before sending anything: the process owning the service's end must
  run as LocalSystem. A pupil who binds the port of a stopped service gets nothing, not even one of their own
  helper's matches: they wait in memory, as when the service is away. (Trusting the helper's own user too would
  let a pupil divert their own matches to a program of theirs; a service started by hand for testing must run as
  SYSTEM, e.g. `psexec -s`.)

Named pipes were the alternative; serving one from asyncio needs the private ProactorEventLoop pipe API, while
this keeps the shared asyncio server and the helper's select() loop, and runs (with the OS lookups faked) in tests.
The ctypes calls are `tcp_owner_pid`, `account_of_process` and `restrict_to_service_and_interactive_users`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.ipc import MAX_LINE_BYTES, MatchClient, MatchServer, PeerCred, UntrustedSocket

if TYPE_CHECKING:
    import asyncio

ENDPOINT_NAME = "session.endpoint"
LOOPBACK = "127.0.0.1"
AUTH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
LOCAL_SYSTEM_SID = "S-1-5-18"
# SYSTEM and Administrators: full control; INTERACTIVE (S-1-5-4): read; "P": nothing inherited from the folder.
ENDPOINT_SDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;IU)"

MIB_TCP_STATE_ESTAB = 5
_ROW = struct.Struct("<6I")  # MIB_TCPROW_OWNER_PID: state, local addr, local port, remote addr, remote port, pid
_LOOPBACK_ADDR = struct.unpack("<I", socket.inet_aton(LOOPBACK))[0]  # as the table holds it: network byte order


@dataclass(frozen=True)
class Endpoint:
    port: int
    secret: str

    def to_json(self) -> str:
        return json.dumps({"port": self.port, "secret": self.secret})

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        try:
            values = json.loads(text)
            port, secret = values["port"], values["secret"]
        except (ValueError, TypeError, KeyError) as exc:
            raise OSError("the session endpoint file is not the service's") from exc
        if not isinstance(port, int) or not 0 < port < 65536 or not isinstance(secret, str) or not secret:
            raise OSError("the session endpoint file is not the service's")
        return cls(port, secret)


def endpoint_path_for(socket_path: Path) -> Path:
    """Where the endpoint lives, next to where a Unix socket would be (callers pass ipc.socket_path_for)."""
    return Path(socket_path).with_name(ENDPOINT_NAME)


def auth_line(secret: str) -> bytes:
    return json.dumps({"type": "auth", "secret": secret}).encode() + b"\n"


def secret_matches(line: bytes, secret: str) -> bool:
    """Whether a helper's first line carries the secret (compared in constant time)."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return False
    offered = message.get("secret") if isinstance(message, dict) and message.get("type") == "auth" else None
    return isinstance(offered, str) and hmac.compare_digest(offered.encode(), secret.encode())


def owner_pid_from_table(table: bytes, local_port: int, remote_port: int) -> int | None:
    """The owning PID of the established loopback connection local_port -> remote_port in a
    MIB_TCPTABLE_OWNER_PID (a DWORD count, then rows of six DWORDs; ports in network order in the low 16 bits)."""
    (count,) = struct.unpack_from("<I", table)
    for index in range(min(count, (len(table) - 4) // _ROW.size)):
        state, local_addr, lport, remote_addr, rport, pid = _ROW.unpack_from(table, 4 + index * _ROW.size)
        if (state == MIB_TCP_STATE_ESTAB and local_addr == _LOOPBACK_ADDR and remote_addr == _LOOPBACK_ADDR
                and socket.ntohs(lport & 0xFFFF) == local_port and socket.ntohs(rport & 0xFFFF) == remote_port):
            return pid
    return None


# ---------------------------------------------------------------------------------------------- the OS calls


def tcp_owner_pid(local_port: int, remote_port: int) -> int | None:
    """GetExtendedTcpTable(AF_INET, TCP_TABLE_OWNER_PID_ALL): who owns the loopback end at local_port."""
    import ctypes
    from ctypes import wintypes

    iphlpapi = ctypes.WinDLL("iphlpapi")
    get_table = iphlpapi.GetExtendedTcpTable
    get_table.argtypes = [ctypes.c_void_p, ctypes.POINTER(wintypes.DWORD), wintypes.BOOL, wintypes.ULONG,
                          ctypes.c_int, wintypes.ULONG]
    get_table.restype = wintypes.DWORD
    af_inet, tcp_table_owner_pid_all, error_insufficient_buffer = 2, 5, 122
    size = wintypes.DWORD(0)
    for _attempt in range(5):  # the table can grow between the size query and the read
        buffer = ctypes.create_string_buffer(size.value or 4)
        result = get_table(buffer, ctypes.byref(size), False, af_inet, tcp_table_owner_pid_all, 0)
        if result == 0:
            return owner_pid_from_table(buffer.raw, local_port, remote_port)
        if result != error_insufficient_buffer:
            raise OSError(result, "GetExtendedTcpTable failed")
    raise OSError("GetExtendedTcpTable: the table kept growing")


def account_of_process(pid: int) -> tuple[str, str]:
    """(SID string, DOMAIN\\name) of the user a process runs as, from its token."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    kernel32.LocalFree.argtypes = [wintypes.HLOCAL]
    advapi32.OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
    advapi32.GetTokenInformation.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD,
                                             ctypes.POINTER(wintypes.DWORD)]
    advapi32.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p, ctypes.POINTER(wintypes.LPWSTR)]
    advapi32.LookupAccountSidW.argtypes = [wintypes.LPCWSTR, ctypes.c_void_p, wintypes.LPWSTR,
                                           ctypes.POINTER(wintypes.DWORD), wintypes.LPWSTR,
                                           ctypes.POINTER(wintypes.DWORD), ctypes.POINTER(ctypes.c_int)]
    process_query_limited_information, token_query, token_user = 0x1000, 0x0008, 1

    def failed(call: str) -> OSError:
        return OSError(ctypes.get_last_error(), f"{call} failed for pid {pid}")

    process = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not process:
        raise failed("OpenProcess")
    token = wintypes.HANDLE()
    try:
        if not advapi32.OpenProcessToken(process, token_query, ctypes.byref(token)):
            raise failed("OpenProcessToken")
        try:
            needed = wintypes.DWORD(0)
            advapi32.GetTokenInformation(token, token_user, None, 0, ctypes.byref(needed))
            info = ctypes.create_string_buffer(needed.value)
            if not advapi32.GetTokenInformation(token, token_user, info, needed, ctypes.byref(needed)):
                raise failed("GetTokenInformation")
            sid = ctypes.cast(info, ctypes.POINTER(ctypes.c_void_p))[0]  # TOKEN_USER.User.Sid
            text = wintypes.LPWSTR()
            if not advapi32.ConvertSidToStringSidW(sid, ctypes.byref(text)):
                raise failed("ConvertSidToStringSidW")
            sid_string = text.value
            kernel32.LocalFree(text)
            name, domain = ctypes.create_unicode_buffer(256), ctypes.create_unicode_buffer(256)
            name_len, domain_len, use = wintypes.DWORD(256), wintypes.DWORD(256), ctypes.c_int()
            if not advapi32.LookupAccountSidW(None, sid, name, ctypes.byref(name_len), domain,
                                              ctypes.byref(domain_len), ctypes.byref(use)):
                return sid_string, sid_string  # a deleted account: the SID still names it
            return sid_string, f"{domain.value}\\{name.value}" if domain.value else name.value
        finally:
            kernel32.CloseHandle(token)
    finally:
        kernel32.CloseHandle(process)


def restrict_to_service_and_interactive_users(path: Path) -> None:
    """Apply ENDPOINT_SDDL as the file's DACL (SetFileSecurityW); OSError if Windows refuses."""
    import ctypes
    from ctypes import wintypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32")
    advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = [
        wintypes.LPCWSTR, wintypes.DWORD, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(wintypes.ULONG)]
    advapi32.SetFileSecurityW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, ctypes.c_void_p]
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    sddl_revision_1 = 1
    dacl_security_information, protected_dacl_security_information = 0x4, 0x80000000
    descriptor = ctypes.c_void_p()
    if not advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(ENDPOINT_SDDL, sddl_revision_1,
                                                                        ctypes.byref(descriptor), None):
        raise OSError(ctypes.get_last_error(), "ConvertStringSecurityDescriptorToSecurityDescriptorW failed")
    try:
        if not advapi32.SetFileSecurityW(str(path), dacl_security_information | protected_dacl_security_information,
                                         descriptor):
            raise OSError(ctypes.get_last_error(), f"SetFileSecurityW failed on {path}")
    finally:
        kernel32.LocalFree(descriptor)


def loopback_peer(sock: socket.socket) -> tuple[int, str, str]:
    """(pid, SID, account) of the process at the other end of a connected loopback socket."""
    local_port, peer_port = sock.getsockname()[1], sock.getpeername()[1]
    pid = tcp_owner_pid(peer_port, local_port)
    if pid is None:
        raise OSError(f"no process owns the loopback connection from port {peer_port}")
    sid, account = account_of_process(pid)
    return pid, sid, account


def write_endpoint(path: Path, endpoint: Endpoint) -> None:
    """Write the endpoint so that no moment exists where the secret is in a file with a wider ACL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    staging.touch(mode=0o600)
    restrict_to_service_and_interactive_users(staging)
    staging.write_text(endpoint.to_json())
    os.replace(staging, path)  # a rename keeps the file's own ACL


# ---------------------------------------------------------------------------------------------- the two ends


class WindowsMatchServer(MatchServer):
    """MatchServer on 127.0.0.1: checks the secret, then names the peer from its process token."""

    @property
    def endpoint_path(self) -> Path:
        return endpoint_path_for(self.socket_path)

    async def start(self) -> None:
        import asyncio

        self._secret = secrets.token_hex(32)
        self._server = await asyncio.start_server(self._serve, host=LOOPBACK, port=0, limit=MAX_LINE_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            write_endpoint(self.endpoint_path, Endpoint(self.port, self._secret))
        except OSError:
            await self.close()
            raise

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(FileNotFoundError):
            self.endpoint_path.unlink()  # a helper must not find the port of a service that has gone

    async def _identify(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> PeerCred:
        import asyncio

        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), AUTH_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            raise OSError(f"no secret offered ({type(exc).__name__})") from exc
        if not secret_matches(line, self._secret):
            raise OSError("wrong secret")
        sock = writer.get_extra_info("socket")
        if sock.getpeername()[0] != LOOPBACK:
            raise OSError("not a loopback peer")
        pid, _sid, account = loopback_peer(sock)
        return PeerCred(pid=pid, uid=-1, gid=-1, username=account)


class WindowsMatchClient(MatchClient):
    """MatchClient over loopback TCP: reads the endpoint, checks who listens, offers the secret."""

    service_sids: frozenset[str] = frozenset({LOCAL_SYSTEM_SID})

    def _connect(self) -> socket.socket:
        endpoint = Endpoint.from_json(endpoint_path_for(self.socket_path).read_text())
        sock = socket.create_connection((LOOPBACK, endpoint.port), timeout=CONNECT_TIMEOUT_S)
        try:
            self._check_service(sock)
            sock.sendall(auth_line(endpoint.secret))
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        return sock

    def _check_service(self, sock: socket.socket) -> None:
        pid, sid, account = loopback_peer(sock)
        if sid not in self.service_sids:
            raise UntrustedSocket(f"port {sock.getpeername()[1]} belongs to {account} (pid {pid}), not the service")
