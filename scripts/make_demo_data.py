"""Write the demo roster, pharmacies and intakes under ``data/demo/`` (deterministic: fixed seed).

Run: ``.venv/bin/python scripts/make_demo_data.py [OUT_DIR]`` — it re-checks that every demo intake validates,
matches at least three physicians, gets a pharmacy for each compounded service and has exactly the
blocking findings of ``EXPECTED_BLOCKING`` (one intake, so the demo shows ops approving a plan), and
refuses to write otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.assessment import assess  # noqa: E402
from domain.identifiers import dea_with_check_digit, npi_with_check_digit  # noqa: E402
from domain.intake import parse_intake  # noqa: E402
from domain.matching import rank  # noqa: E402
from domain.pharmacy import select_pharmacies  # noqa: E402
from domain.roster import PHARMACY_COLUMNS, PHYSICIAN_COLUMNS, parse_pharmacies, parse_physicians  # noqa: E402

SEED = 20261215
OUT = ROOT / "data" / "demo"
STATES = ["TX", "OK", "FL", "CA", "NY", "AZ", "CO", "GA", "WA", "IL", "NC", "NV"]
NEIGHBOURS = {
    "TX": ["OK", "NM", "LA", "AR"], "OK": ["TX", "KS", "AR"], "FL": ["GA", "AL", "NC"], "CA": ["NV", "AZ", "OR"],
    "NY": ["NJ", "CT", "PA"], "AZ": ["NV", "CA", "NM"], "CO": ["WA", "UT", "AZ", "NM"], "GA": ["FL", "NC", "SC"],
    "WA": ["OR", "CO", "ID"], "IL": ["IN", "WI", "MO"], "NC": ["SC", "GA", "VA"], "NV": ["AZ", "CA", "UT"],
}
FIRST = ["Ana", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Luis",
         "Maya", "Nikhil", "Olga", "Pedro", "Quinn", "Rosa", "Sanjay", "Tara", "Umar", "Vera", "Wes", "Yara"]
LAST = ["Cruz", "Abbott", "Bishop", "Delgado", "Ellis", "Foster", "Garcia", "Hughes", "Ibarra", "Jensen", "Khan",
        "Lopez", "Morales", "Nguyen", "Owens", "Patel", "Quintero", "Reyes", "Shah", "Tran", "Underwood", "Vargas",
        "Walsh", "Young", "Zimmer"]
PROFILES = {
    "aesthetics": ["neurotoxins", "dermal_fillers", "laser"],
    "hormones": ["testosterone_hrt", "female_hrt", "glp1_weight_loss", "peptides"],
    "wellness": ["iv_nutrients", "peptides", "ketamine", "glp1_weight_loss"],
    "aesthetic_weight": ["neurotoxins", "dermal_fillers", "glp1_weight_loss", "testosterone_hrt", "female_hrt"],
    "broad": ["neurotoxins", "dermal_fillers", "laser", "testosterone_hrt", "female_hrt", "glp1_weight_loss",
              "peptides", "iv_nutrients", "ketamine"],
}
BOARDS = ["internal_medicine", "family_medicine", "dermatology", "plastic_surgery", "emergency_medicine", "anesthesiology"]
FL_SKIN_BOARDS = ("dermatology", "plastic_surgery")

#: Physicians written first, so each demo intake surely has enough matches (home, extra states, profile).
ANCHORS = [
    ("TX", ["OK"], "aesthetic_weight"), ("TX", ["OK"], "broad"), ("OK", ["TX"], "aesthetic_weight"),
    ("TX", ["OK", "FL"], "broad"),
    ("FL", [], "broad"), ("FL", ["GA"], "broad"), ("FL", ["NC"], "broad"), ("FL", [], "broad"),
    ("CO", ["WA"], "broad"), ("CO", ["WA", "AZ"], "wellness"), ("WA", ["CO"], "broad"), ("CO", ["WA"], "broad"),
]


def _date_between(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange((end - start).days + 1))


def _board(drawn: str, *, anchor: bool, home: str) -> str:
    """Florida anchors hold a skin board: Fla. Stat. §458.348(4)(c) asks it of the Miami skin-care office's director."""
    return "dermatology" if anchor and home == "FL" and drawn not in FL_SKIN_BOARDS else drawn


def physicians(rng: random.Random, count: int = 72) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    npis: set[str] = set()
    for i in range(count):
        if i < len(ANCHORS):
            home, extra, profile = ANCHORS[i]
        else:
            home = STATES[i % len(STATES)]
            extra = rng.sample(NEIGHBOURS[home], rng.randint(0, 2)) + rng.sample(STATES, rng.randint(0, 2))
            profile = rng.choice(list(PROFILES))
        states = list(dict.fromkeys([home, *extra]))
        first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
        npi = npi_with_check_digit("1" + f"{rng.randrange(10**8):08d}")
        while npi in npis:
            npi = npi_with_check_digit("1" + f"{rng.randrange(10**8):08d}")
        npis.add(npi)
        therapies = list(PROFILES[profile])
        if profile != "broad" and rng.random() < 0.3:
            therapies.append(rng.choice([s for s in PROFILES["broad"] if s not in therapies]))
        licences = [f"{st}:{st}{rng.randrange(10**5):05d}:{_date_between(rng, date(2027, 3, 1), date(2029, 12, 31))}"
                    for st in states]
        if i >= len(ANCHORS) and i % 17 == 5:  # a licence inside the 60-day margin, for `match --explain`
            licences[0] = f"{home}:{home}{rng.randrange(10**5):05d}:2027-01-10"
        with_dea = i < len(ANCHORS) or rng.random() < 0.75
        dea = [f"{st}:{dea_with_check_digit(rng.choice('ABF') + last[0], f'{rng.randrange(10**6):06d}')}:"
               f"{_date_between(rng, date(2027, 3, 1), date(2029, 12, 31))}" for st in states] if with_dea else []
        max_clinics = rng.randint(3, 8)
        active = rng.randint(0, 2)
        if i >= len(ANCHORS) and i % 13 == 7:
            active = max_clinics = 3  # at capacity
        supervised = f"{home}:{rng.randint(1, 7)}" if rng.random() < 0.25 else ""
        rows.append({
            "npi": npi, "first_name": first, "last_name": last, "degree": "DO" if i % 5 == 3 else "MD",
            "email": f"{first.lower()}.{last.lower()}{i}@md.example", "phone": f"+1555{rng.randrange(10**7):07d}",
            "home_state": home, "licenses": ";".join(licences), "dea": ";".join(dea), "therapies": ";".join(therapies),
            "max_clinics": str(max_clinics), "active_clinics": str(active),
            "malpractice_expires": str(_date_between(rng, date(2027, 6, 1), date(2028, 12, 31))),
            "board_certifications": _board(rng.choice(BOARDS), anchor=i < len(ANCHORS), home=home),
            "telehealth": "false" if i >= len(ANCHORS) and rng.random() < 0.15 else "true",
            "supervised_midlevels": supervised,
        })
    return rows


def pharmacies() -> list[dict[str, str]]:
    all12 = ";".join(STATES)
    table = [
        ("national-compounding", "National Compounding Pharmacy", "503A", all12, "non_sterile;sterile;hazardous",
         "testosterone_hrt;female_hrt;glp1_weight_loss;peptides;ketamine"),
        ("lonestar-rx", "Lone Star Compounding", "503A", "TX;OK;NM;LA;AR", "non_sterile;sterile;hazardous",
         "testosterone_hrt;female_hrt;glp1_weight_loss;peptides"),
        ("sunshine-rx", "Sunshine Apothecary", "503A", "FL;GA;NC;SC;AL", "non_sterile;hazardous", "female_hrt"),
        ("gulf-sterile", "Gulf Sterile Compounding", "503A", "FL;GA;TX", "sterile",
         "testosterone_hrt;glp1_weight_loss;peptides;ketamine"),
        ("rocky-mountain-rx", "Rocky Mountain Compounding", "503A", "CO;WA;AZ;UT;NV", "non_sterile;sterile;hazardous",
         "testosterone_hrt;female_hrt;glp1_weight_loss;peptides"),
        ("pacific-compounding", "Pacific Compounding", "503A", "CA;WA;OR;NV;AZ;CO", "sterile;hazardous",
         "testosterone_hrt;glp1_weight_loss;peptides;ketamine"),
        ("empire-rx", "Empire Compounding", "503A", "NY;NJ;CT;PA;IL;NC", "non_sterile;sterile;hazardous",
         "testosterone_hrt;female_hrt;glp1_weight_loss;peptides"),
        ("nationwide-outsourcing", "Nationwide Outsourcing Facility", "503B", all12, "sterile;hazardous",
         "iv_nutrients;ketamine;testosterone_hrt;glp1_weight_loss;peptides"),
        ("midwest-outsourcing", "Midwest Outsourcing", "503B", "IL;IN;OH;MI;WI;TX;FL", "sterile", "iv_nutrients;ketamine"),
        ("coastal-503b", "Coastal 503B", "503B", "FL;GA;NC;NY;CA;WA", "sterile;hazardous", "iv_nutrients;ketamine;peptides"),
    ]
    return [dict(zip(PHARMACY_COLUMNS, (*row, f"orders@{row[0]}.example"))) for row in table]


def _contact(name: str, user: str, phone: str) -> dict[str, str]:
    return {"name": name, "email": f"{user}@clinic.example", "phone": phone}


INTAKES = {
    "glow-austin": {
        "clinic_key": "glow-austin", "clinic_name": "Glow Aesthetics Austin LLC",
        "contact": _contact("Dana Reyes", "dana", "+15125550100"),
        "states": ["TX", "OK"], "care_model": "hybrid",
        "services": ["neurotoxins", "dermal_fillers", "glp1_weight_loss", "testosterone_hrt"],
        "monthly_patients": 350,
        "locations": [{"state": "TX", "city": "Austin", "zip": "78701"}],
        "midlevels": [{"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP123456"}],
        "requested_start": "2026-12-15",
        "product_choices": {"glp1_weight_loss": "fda_approved"},
    },
    "sunrise-miami": {
        "clinic_key": "sunrise-miami", "clinic_name": "Sunrise Wellness Miami",
        "contact": _contact("Marisol Ortega", "marisol", "+13055550142"),
        "states": ["FL"], "care_model": "on_site",
        "services": ["neurotoxins", "dermal_fillers", "female_hrt", "iv_nutrients", "glp1_weight_loss"],
        "monthly_patients": 180,
        "locations": [{"state": "FL", "city": "Miami", "zip": "33131"}],
        "midlevels": [{"name": "Chris Alvarez", "role": "PA", "state": "FL", "license_number": "PA9104477"},
                      {"name": "Jordan Pike", "role": "RN", "state": "FL", "license_number": "RN3302211"}],
        "requested_start": "2026-12-15",
        "product_choices": {"glp1_weight_loss": "fda_approved"},
    },
    "peak-denver": {
        "clinic_key": "peak-denver", "clinic_name": "Peak Performance Denver",
        "contact": _contact("Alex Kim", "alex", "+17205550199"),
        "states": ["CO", "WA"], "care_model": "hybrid",
        "services": ["peptides", "iv_nutrients", "ketamine", "glp1_weight_loss"],
        "monthly_patients": 120,
        "locations": [{"state": "CO", "city": "Denver", "zip": "80202"}],
        "midlevels": [{"name": "Riley Stone", "role": "PA", "state": "CO", "license_number": "PA0012345"}],
        "requested_start": "2026-12-15",
        "product_choices": {"glp1_weight_loss": "compounded_503a"},
    },
}


#: The one demo intake whose plan ops must approve (compounded GLP-1 after the FDA discretion ended),
#: with its blocking rule ids; every other demo intake must have none.
EXPECTED_BLOCKING = {"peak-denver": ["fda.compounding_discretion.semaglutide", "fda.compounding_discretion.tirzepatide"]}


def _csv(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def check(roster_csv: str, pharmacy_csv: str, intakes: dict[str, dict]) -> list[str]:
    """Problems that would make the demo fail (empty list: good to write)."""
    docs, errors = parse_physicians(roster_csv, "csv")
    phs, ph_errors = parse_pharmacies(pharmacy_csv, "csv")
    problems = [f"physicians.csv {e}" for e in errors] + [f"pharmacies.csv {e}" for e in ph_errors]
    for key, raw in intakes.items():
        intake, intake_problems = parse_intake(raw)
        if intake is None:
            problems += [f"{key}: {p}" for p in intake_problems]
            continue
        plan = assess(intake, date(2026, 12, 1))
        blocking = sorted(f.rule_id for f in plan.blocking)
        if blocking != EXPECTED_BLOCKING.get(key, []):
            problems.append(f"{key}: blocking findings {blocking}, expected {EXPECTED_BLOCKING.get(key, [])}")
        result = rank(docs, intake, plan)
        if len(result.candidates) < 3:
            problems.append(f"{key}: only {len(result.candidates)} candidates")
        _, unfilled = select_pharmacies(intake, plan, phs)
        problems += [f"{key}: {p}" for p in unfilled]
    return problems


def main(argv: list[str] | None = None) -> int:
    """``make_demo_data.py [OUT_DIR]`` (default ``data/demo``)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT
    rng = random.Random(SEED)
    roster_csv = _csv(physicians(rng), (*PHYSICIAN_COLUMNS, "supervised_midlevels"))
    pharmacy_csv = _csv(pharmacies(), PHARMACY_COLUMNS)
    problems = check(roster_csv, pharmacy_csv, INTAKES)
    if problems:
        print("demo data not written:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    (out / "intakes").mkdir(parents=True, exist_ok=True)
    (out / "physicians.csv").write_text(roster_csv, encoding="utf-8")
    (out / "pharmacies.csv").write_text(pharmacy_csv, encoding="utf-8")
    for key, raw in INTAKES.items():
        (out / "intakes" / f"{key}.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}: physicians.csv, pharmacies.csv, {len(INTAKES)} intakes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
