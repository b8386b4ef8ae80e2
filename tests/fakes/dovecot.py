"""A real Dovecot IMAP server in a temp dir, for the email tests and `python -m bench email`.

Runs `dovecot -F` in the foreground with its own config (passwd-file users, maildir under the temp
dir, loopback ports only, optionally a self-signed certificate for IMAPS/STARTTLS); nothing of the
system's Dovecot set-up is used or touched. Where Dovecot is missing, `ensure_dovecot()` installs
Debian's dovecot-imapd when it runs as root with apt-get, and otherwise says why it cannot.
"""
from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bench.load import free_port

DOVECOT_PATHS = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def find_dovecot() -> str | None:
    return next((p for p in DOVECOT_PATHS if os.access(p, os.X_OK)), None) or shutil.which("dovecot")


def ensure_dovecot(install: bool = True) -> tuple[str | None, str]:
    """(path to dovecot, "") or (None, why it is not available)."""
    path = find_dovecot()
    if path or not install:
        return path, "" if path else "dovecot is not installed"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "dovecot is not installed and cannot be (needs root and apt-get): apt-get install dovecot-imapd"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "dovecot-imapd"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:  # the package lists may be missing on a fresh image
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    path = find_dovecot()
    return (path, "") if path else (None, f"apt-get install dovecot-imapd failed: {res.stderr.strip()[-300:]}")


class Dovecot:
    def __init__(self, users: dict[str, str], *, root: Path | None = None, cert: Path | None = None,
                 key: Path | None = None, binary: str | None = None, extra_config: str = "") -> None:
        # Dovecot's auth and mail processes run as its own user: every folder above the passwd file and
        # the maildirs must be traversable by it, which private temp dirs (mode 0700) are not.
        self._made_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="copilot-dovecot-"))
        if self._made_root:
            self.root.chmod(0o755)
        self.users = users
        self.cert, self.key = cert, key
        self.binary = binary or find_dovecot() or "dovecot"
        self.extra_config = extra_config  # e.g. "imap_capability = IMAP4rev1" (a server without IDLE)
        self.port = free_port()
        self.imaps_port = free_port() if cert else 0
        self.proc: subprocess.Popen | None = None

    def _ids(self) -> tuple[int, int]:
        # Dovecot never gives mail access to uid 0: as root, mail belongs to the package's own user.
        if os.geteuid() == 0:
            for name in ("dovecot", "nobody"):
                try:
                    pw = pwd.getpwnam(name)
                    return pw.pw_uid, pw.pw_gid
                except KeyError:
                    continue
        return os.getuid(), os.getgid()

    def _config(self) -> str:
        r = self.root
        me = pwd.getpwuid(os.getuid()).pw_name
        unprivileged = "" if os.geteuid() == 0 else (
            f"default_internal_user = {me}\ndefault_login_user = {me}\ndefault_internal_group = {me}\n")
        ssl = (f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{self.key}\n" if self.cert else "ssl = no\n")
        imaps = (f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.imaps_port}\n    ssl = yes\n  }}\n"
                 if self.cert else "  inet_listener imaps {\n    port = 0\n  }\n")
        chroot = "" if os.geteuid() == 0 else "  chroot =\n"
        return f"""base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
{unprivileged}protocols = imap
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
auth_failure_delay = 0
imap_idle_notify_interval = 10 mins
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r}/users/%u
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
{imaps}}}
# no brute-force penalty: a test that logs in with a wrong password must not slow the next login
service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{self.extra_config}
"""

    def _write_users(self) -> None:
        # One passwd-file per user (the path holds %u): a user added while Dovecot runs is a new file,
        # read on first login, rather than a changed file Dovecot may not notice within the same second.
        uid, gid = self._ids()
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        (self.root / "users").mkdir(parents=True, exist_ok=True)
        for user, password in self.users.items():
            home = self.root / "home" / user.replace("@", "_at_")
            home.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                for p in (self.root / "home", home):
                    os.chown(p, uid, gid)
            (self.root / "users" / user).write_text(f"{user}:{{PLAIN}}{password}:{uid}:{gid}::{home}\n")

    def add_user(self, user: str, password: str) -> None:
        self.users[user] = password
        self._write_users()

    def start(self, timeout: float = 15.0) -> "Dovecot":
        self.users = dict(self.users)
        self._write_users()
        conf = self.root / "dovecot.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen([self.binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stderr.read().decode()[-1500:]}{self.log()[-1500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log()[-1500:]}")

    def log(self) -> str:
        p = self.root / "dovecot.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._made_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Dovecot":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # mailbox helpers (blocking; run them in a thread from async code) --------------------------------
    def imap(self, user: str) -> imaplib.IMAP4:
        m = imaplib.IMAP4("127.0.0.1", self.port)
        m.login(user, self.users[user])
        return m

    def append(self, user: str, *messages: bytes, folder: str = "INBOX") -> list[int]:
        """APPEND each message; returns their UIDs (Dovecot answers with APPENDUID)."""
        uids = []
        m = self.imap(user)
        try:
            for raw in messages:
                typ, data = m.append(folder, None, None, raw)
                if typ != "OK":
                    raise RuntimeError(f"APPEND failed: {data}")
                uids.append(int(data[0].split(b"]")[0].split()[-1]))
        finally:
            m.logout()
        return uids

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        m = self.imap(user)
        try:
            typ, data = m.status(folder, "(UIDVALIDITY)")
            return int(data[0].split(b"UIDVALIDITY")[1].strip(b" )"))
        finally:
            m.logout()

    def create(self, user: str, folder: str) -> None:
        m = self.imap(user)
        try:
            m.create(folder)
        finally:
            m.logout()

    def recreate(self, user: str, folder: str) -> int:
        """Delete and create `folder` (empty, with a new UIDVALIDITY); returns the new UIDVALIDITY."""
        old = self.uidvalidity(user, folder)
        while True:
            m = self.imap(user)
            try:
                m.delete(folder)
                m.create(folder)
            finally:
                m.logout()
            new = self.uidvalidity(user, folder)
            if new != old:  # Dovecot derives it from the clock: within one second it may repeat
                return new
            time.sleep(1.0)
