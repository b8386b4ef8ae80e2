"""Secrets never reach a log: settings hold them as SecretStr, tracebacks carry no local variables, and a
redaction filter masks the configured values and common credential patterns (in-process and in a real
`copilot serve`'s stderr)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

ADMIN = "adm-TOKEN-zz91"
LLM_KEY = "sk-llmkey-zz92abcdef"
DB_PASSWORD = "Pw-zz93-secret"


def test_settings_hold_secrets_as_secretstr(make_settings):
    s = make_settings(admin_token=ADMIN, llm_api_key=LLM_KEY, database_url=f"postgresql://copilot:{DB_PASSWORD}@db/copilot")
    shown = repr(s) + str(s.model_dump())
    assert ADMIN not in shown and LLM_KEY not in shown and DB_PASSWORD not in shown
    assert s.admin_token.get_secret_value() == ADMIN and DB_PASSWORD in s.db_url
    s.admin_token = "changed-later"  # an assignment is validated into a SecretStr too
    assert s.admin_token.get_secret_value() == "changed-later" and "changed-later" not in repr(s)


def _fails_holding_a_secret(settings):
    admin_token = settings.admin_token.get_secret_value()  # noqa: F841  (a local a traceback renderer could print)
    llm_api_key = LLM_KEY  # noqa: F841
    raise RuntimeError("database is locked")


def test_a_logged_traceback_shows_no_secret(make_settings, capsys):
    from bot.ops.logs import configure, secret_values

    s = make_settings(admin_token=ADMIN, llm_api_key=LLM_KEY, database_url=f"postgresql://copilot:{DB_PASSWORD}@db/copilot")
    for json in (False, True):
        configure("INFO", json, secret_values(s))
        try:
            _fails_holding_a_secret(s)
        except RuntimeError:
            logging.getLogger("copilot.test").exception("lock error with %s", s.db_url)
        logging.getLogger("copilot.test").warning(
            "calling Authorization: Bearer abc.def-123456 password=hunter2222 access_token=tok9876543 key %s", LLM_KEY)
        err = capsys.readouterr().err
        assert "database is locked" in err and "Traceback" in err and "_fails_holding_a_secret" in err
        for secret in (ADMIN, LLM_KEY, DB_PASSWORD, "abc.def-123456", "hunter2222", "tok9876543"):
            assert secret not in err, (json, secret, err)
    logging.getLogger().handlers.clear()


def test_copilot_serve_stderr_holds_no_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")}
    env.update(COPILOT_DATA_DIR=str(tmp_path / "data"), COPILOT_CONFIG=str(tmp_path / "absent.toml"), COPILOT_LOG_LEVEL="DEBUG",
               COPILOT_ADMIN_TOKEN=ADMIN, COPILOT_LLM_API_KEY=LLM_KEY, COPILOT_PORT="1",
               # nothing listens on port 1: the start fails and the whole traceback is logged at DEBUG
               COPILOT_DATABASE_URL=f"postgresql+psycopg://copilot:{DB_PASSWORD}@127.0.0.1:1/copilot")
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "serve"], env=env, capture_output=True, text=True, timeout=120)
    err = proc.stderr + proc.stdout
    assert proc.returncode != 0 and "Traceback" in err and "OperationalError" in err, err[-2000:]
    for secret in (ADMIN, LLM_KEY, DB_PASSWORD):
        assert secret not in err, secret


def test_connector_accounts_hold_their_secrets_as_secretstr(tmp_path, monkeypatch, capsys):
    from connectors.dingtalk.config import load_apps
    from connectors.email.config import load_mailboxes
    from connectors.wecom.config import load_corps

    aes = "A" * 43
    env = {"COPILOT_WECOM_CORP_ID": "ww1", "COPILOT_WECOM_TOKEN": "wxTok3n991", "COPILOT_WECOM_AES_KEY": aes,
           "COPILOT_WECOM_SECRET": "corp-secret-7731", "COPILOT_WECOM_AGENT_ID": "1000002",
           "COPILOT_DINGTALK_APP_KEY": "dingkey", "COPILOT_DINGTALK_APP_SECRET": " ding-secret-5521 ",
           "COPILOT_EMAIL_IMAP_HOST": "127.0.0.1", "COPILOT_EMAIL_USERNAME": "bot@x.example", "COPILOT_EMAIL_PASSWORD": "mail-pw-8812"}
    [corp], _ = load_corps("default", {}, env)
    [app], _ = load_apps("default", {}, env)
    [mb], _ = load_mailboxes("default", {}, env)
    shown = " ".join(repr(x) + str(x.model_dump()) for x in (corp, app, mb))
    for secret in ("wxTok3n991", aes, "corp-secret-7731", "ding-secret-5521", "mail-pw-8812"):
        assert secret not in shown, secret
    assert corp.secret.get_secret_value() == "corp-secret-7731" and app.app_secret.get_secret_value() == "ding-secret-5521"
    assert mb.smtp_pass == "mail-pw-8812"  # revealed only for the login

    # and the log filter knows every COPILOT_*SECRET/TOKEN/PASSWORD/KEY value of the environment
    from bot.ops.logs import configure, secret_values

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("COPILOT_CONFIG", str(tmp_path / "absent.toml"))
    configure("INFO", False, secret_values())
    logging.getLogger("copilot.test").error("login with %s failed for %s", "mail-pw-8812", corp)
    err = capsys.readouterr().err
    assert "login with" in err and "mail-pw-8812" not in err and "corp-secret-7731" not in err
    logging.getLogger().handlers.clear()
