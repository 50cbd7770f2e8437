"""The inspection-ready audit packet of one clinic (``mdco audit-packet``, CONTRACT.md).

A zip with ``index.html`` (read first), the plan and findings, the protocols with their SHA-256 and
approvals, the signed agreement PDFs byte-identical to the stored ones, the timeline (audit trail of
the onboarding and the oversight), chart reviews and their corrective actions, adverse events (with the draft MedWatch 3500 of each
serious or sentinel one, ``medwatch/``), renewal notices, exclusion screens,
and ``manifest.json`` listing the SHA-256 of every other file.
"""

from __future__ import annotations

import hashlib
import html
import json
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from domain.codes import oversight_id_for, workflow_id_for
from store import agreements, audit, onboardings, oversight
from store import tables as t
from store.db import run
from store.tables import now_utc
from sqlmodel import select


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, default=str, sort_keys=True) + "\n").encode()


def _protocols(engine: Engine, workflow_id: str) -> list[dict]:
    def work(s) -> list[dict]:
        rows = s.exec(select(t.Protocol).where(t.Protocol.workflow_id == workflow_id).order_by(t.Protocol.service))
        return [r.model_dump() for r in rows.all()]

    return run(engine, work, write=False)


def packet_files(engine: Engine, clinic_key: str) -> dict[str, bytes]:
    """Every file of the packet but the manifest, by path inside the zip."""
    launched = oversight.launched_onboarding(engine, clinic_key)
    wf = launched["workflow_id"] if launched else workflow_id_for(clinic_key)
    onboarding = onboardings.get_onboarding(engine, wf) or {}
    clinic = onboardings.get_clinic(engine, clinic_key) or {}
    files: dict[str, bytes] = {}
    plan = onboarding.get("plan") or {}
    files["plan.json"] = _json({"workflow_id": wf, "clinic_key": clinic_key, "states": clinic.get("states", []),
                                "services": clinic.get("services", []), "plan": plan,
                                "findings": plan.get("findings", [])})
    protocols = []
    for p in _protocols(engine, wf):
        path = f"protocols/{p['service']}-{p['template_version']}.txt"
        files[path] = p["body"].encode()
        protocols.append({"service": p["service"], "version": p["template_version"], "sha256": p["sha256"],
                          "file": path, "approved_at": p["approved_at"], "approved_by": p["approved_by"]})
    files["protocols.json"] = _json(protocols)
    signed = []
    for a in agreements.list_agreements(engine, wf):
        entry = {k: a[k] for k in ("kind", "template_version", "envelope_id", "status", "completed_at", "sha256")}
        if a.get("document_path") and Path(a["document_path"]).exists():
            path = f"agreements/{Path(a['document_path']).name}"
            files[path] = Path(a["document_path"]).read_bytes()  # byte-identical to the stored PDF
            entry["file"] = path
        signed.append(entry)
    files["agreements.json"] = _json(signed)
    timeline = sorted(audit.list_audit(engine, wf) + audit.list_audit(engine, oversight_id_for(clinic_key)),
                      key=lambda e: (str(e["at"]), e["id"]))
    files["timeline.json"] = _json([{k: e[k] for k in ("at", "workflow_id", "actor", "action", "reason", "detail")}
                                    for e in timeline])
    files["chart_reviews.json"] = _json(oversight.list_reviews(engine, clinic_key))
    now = now_utc()
    actions = [{**a, "status": oversight.corrective_action_status(a, now)}
               for a in oversight.corrective_actions(engine, clinic_key)]
    files["corrective_actions.json"] = _json(actions)
    events = oversight.list_events(engine, clinic_key)
    for event in events:  # the draft MedWatch 3500 of a serious or sentinel event, as stored
        if event.get("medwatch_path") and Path(event["medwatch_path"]).exists():
            path = f"medwatch/{Path(event['medwatch_path']).name}"
            files[path] = Path(event["medwatch_path"]).read_bytes()
            event["medwatch_file"] = path
        event.pop("medwatch_path", None)  # the server's folder is no business of the packet
    files["adverse_events.json"] = _json(events)
    files["renewal_notices.json"] = _json(oversight.list_notices(engine, clinic_key))
    files["exclusion_screens.json"] = _json([e for e in timeline if e["action"] == "exclusion_screen"])
    files["index.html"] = _index(clinic_key, clinic, wf, files, protocols, signed, timeline, actions)
    return files


def _index(clinic_key: str, clinic: dict, wf: str, files: dict[str, bytes], protocols: list[dict], signed: list[dict],
           timeline: list[dict], actions: list[dict]) -> bytes:
    e = html.escape
    rows = "".join(f"<tr><td><a href='{e(p)}'>{e(p)}</a></td><td><code>{hashlib.sha256(b).hexdigest()}</code></td></tr>"
                   for p, b in sorted(files.items()))
    prot = "".join(f"<li>{e(p['service'])} {e(p['version'])}: <code>{e(p['sha256'])}</code>, approved "
                   f"{e(str(p['approved_at'] or 'not yet'))} by NPI {e(str(p['approved_by'] or '-'))}</li>"
                   for p in protocols)
    agr = "".join(f"<li>{e(a['kind'])} ({e(a['status'])}, envelope {e(str(a['envelope_id']))}): "
                  f"<code>{e(str(a['sha256'] or '-'))}</code></li>" for a in signed)
    corrective = "".join(f"<li>{e(a['action_id'])} (review {e(a['review_id'])}): {e(str(a['deficiencies']))} "
                         f"deficiencies, opened {e(str(a['opened_at']))}, due {e(str(a['due_at']))}, "
                         f"{e(a['status'])}</li>" for a in actions)
    events = "".join(f"<tr><td>{e(str(x['at']))}</td><td>{e(x['actor'])}</td><td>{e(x['action'])}</td>"
                     f"<td>{e(x['reason'] or '')}</td></tr>" for x in timeline)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Audit packet {e(clinic_key)}</title></head>
<body><h1>Audit packet: {e(clinic.get('name', clinic_key))}</h1>
<p>Clinic <b>{e(clinic_key)}</b> · onboarding <code>{e(wf)}</code> · oversight <code>{e(oversight_id_for(clinic_key))}</code>
· status {e(str(clinic.get('status', '-')))} · medical director NPI {e(str(clinic.get('physician_npi') or '-'))}
· states {e(', '.join(clinic.get('states', [])))} · generated {e(now_utc().isoformat())}</p>
<p>Every file's SHA-256 is in <code>manifest.json</code>; signed agreements are the stored PDFs, byte for byte.</p>
<h2>Protocols</h2><ul>{prot or '<li>none</li>'}</ul>
<h2>Agreements</h2><ul>{agr or '<li>none</li>'}</ul>
<h2>Corrective actions</h2><ul>{corrective or '<li>none</li>'}</ul>
<h2>Files</h2><table border="1"><tr><th>file</th><th>SHA-256</th></tr>{rows}</table>
<h2>Timeline</h2><table border="1"><tr><th>at</th><th>actor</th><th>action</th><th>reason</th></tr>{events}</table>
</body></html>
"""
    return page.encode()


def build_packet(engine: Engine, clinic_key: str, out: Path) -> dict:
    """Write the zip atomically; returns the manifest."""
    files = packet_files(engine, clinic_key)
    manifest = {"clinic_key": clinic_key, "generated_at": now_utc().isoformat(),
                "files": [{"path": p, "sha256": hashlib.sha256(b).hexdigest()} for p, b in sorted(files.items())]}
    tmp = out.with_suffix(out.suffix + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("index.html", files["index.html"])
        z.writestr("manifest.json", _json(manifest))
        for path, data in sorted(files.items()):
            if path != "index.html":
                z.writestr(path, data)
    tmp.replace(out)
    return manifest
