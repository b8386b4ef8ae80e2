"""Who really sent a mail: the receiving server's verdict (RFC 8601 Authentication-Results), never a From header.

A From header is whatever the sender typed. The mail server that received the message checked SPF, DKIM
and DMARC and wrote its verdict in an `Authentication-Results` header named by its authserv-id. Only
that server's header counts (the mailbox's `authserv_id`, or COPILOT_EMAIL_AUTHSERV_ID): any other
Authentication-Results header may have been written by the sender and is ignored. A receiving server
prepends its header, so of several headers claiming the trusted authserv-id only the topmost is read
(the ones below it came with the message).

The sender is verified when that header shows dmarc=pass (for the From domain), or dkim=pass with a
signing domain (header.d) aligned with the From domain: equal, or one a subdomain of the other (DMARC's
relaxed alignment, without a public-suffix list: a DKIM key can only be published by whoever controls
the signing domain's DNS). An explicit dmarc=fail is never outweighed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class SenderCheck:
    verified: bool
    reason: str  # one line: why (shown by `copilot email parse`, logged, kept on MailFacts)


@dataclass(frozen=True)
class ResInfo:
    method: str
    result: str
    props: dict[str, str]


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[^\s;"]+|;')


def _uncomment(value: str) -> str:
    """Drop RFC 5322 comments (nested parentheses), keeping quoted strings."""
    out, depth, quoted, escaped = [], 0, False, False
    for ch in value[:8192]:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return " ".join("".join(out).split())


def parse_header(value: str) -> tuple[str, list[ResInfo]]:
    """One Authentication-Results value -> (authserv-id, its results). Lenient: what cannot be read is skipped."""
    tokens = _TOKEN.findall(_uncomment(value))
    groups: list[list[str]] = [[]]
    for t in tokens:
        if t == ";":
            groups.append([])
        else:
            groups[-1].append(t.strip('"'))
    head = groups[0]
    authserv = head[0].lower() if head else ""
    results = []
    for g in groups[1:]:
        if not g or "=" not in g[0]:
            continue  # "none", or damage
        method, _, result = g[0].partition("=")
        props: dict[str, str] = {}
        for t in g[1:]:
            k, eq, v = t.partition("=")
            if eq:
                props.setdefault(k.lower(), v.strip('"').lower())
        results.append(ResInfo(method.split("/")[0].lower(), result.lower(), props))
    return authserv, results


def _domain(addr: str) -> str:
    return addr.rpartition("@")[2].strip().strip(".").lower() if "@" in addr else ""


def aligned(signer: str, from_domain: str) -> bool:
    signer = signer.strip().strip(".").lower().rpartition("@")[2]  # header.i may be an address
    if not signer or not from_domain or "." not in signer:
        return False
    return signer == from_domain or from_domain.endswith("." + signer) or signer.endswith("." + from_domain)


def check_sender(headers: Iterable[str], from_addr: str, authserv_ids: Iterable[str]) -> SenderCheck:
    """The trusted server's verdict on `from_addr` (see the module's docstring)."""
    trusted = {a.strip().lower() for a in authserv_ids if a and a.strip()}
    if not trusted:
        return SenderCheck(False, "no authserv-id is configured (authserv_id / COPILOT_EMAIL_AUTHSERV_ID): no sender is verified")
    domain = _domain(from_addr)
    if not domain:
        return SenderCheck(False, "the mail has no From address")
    ignored = 0
    for value in headers:
        authserv, results = parse_header(str(value))
        if authserv not in trusted:
            ignored += 1
            continue
        dmarc = [r for r in results if r.method == "dmarc"]
        if any(r.result != "pass" and r.result not in ("none", "neutral") for r in dmarc):
            return SenderCheck(False, f"{authserv}: dmarc={dmarc[0].result} for {domain}")
        for r in dmarc:
            hfrom = r.props.get("header.from", domain)
            if r.result == "pass" and hfrom == domain:
                return SenderCheck(True, f"{authserv}: dmarc=pass for {domain}")
        for r in results:
            if r.method == "dkim" and r.result == "pass":
                signer = r.props.get("header.d") or r.props.get("header.i", "")
                if aligned(signer, domain):
                    return SenderCheck(True, f"{authserv}: dkim=pass, header.d={signer} aligned with {domain}")
        signers = [r.props.get("header.d", "?") for r in results if r.method == "dkim" and r.result == "pass"]
        if signers:
            return SenderCheck(False, f"{authserv}: dkim=pass only for {', '.join(signers)}, not aligned with {domain}")
        return SenderCheck(False, f"{authserv}: neither dmarc=pass nor an aligned dkim=pass for {domain}")
    extra = f" ({ignored} Authentication-Results header(s) from other servers ignored)" if ignored else ""
    return SenderCheck(False, f"no Authentication-Results header from {', '.join(sorted(trusted))}{extra}")
