"""Scrub protected health information (PHI) from free training text.

Patient messages in doctor-chat corpora carry names, phone numbers, dates and the
like.  A model fine-tuned on them can memorise and regurgitate those, so every
training example goes through :func:`scrub` first, which replaces each HIPAA Safe
Harbor identifier that free text can carry with a readable placeholder.

Only the standard library is used: the usual tool (presidio) needs a spaCy model
download that is impossible offline, and regular expressions are auditable.  The
rules are context driven (a name needs a cue such as "my name is" or "Dr.", a
record number needs a label) so ordinary medical text - "HbA1c 6.5%",
"5/325 mg", "BP 120/80", "type 2 diabetes" - passes through untouched.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["PLACEHOLDERS", "scrub"]

#: kind -> text that replaces it.  "mrn" covers every labelled identifier (record,
#: account, health plan, license, certificate, device and vehicle numbers).
#: "age" only fires for ages over 89, which Safe Harbor requires to be aggregated.
PLACEHOLDERS: dict[str, str] = {
    "url": "[URL]",
    "email": "[EMAIL]",
    "ip": "[IP]",
    "ssn": "[SSN]",
    "mrn": "[ID]",
    "phone": "[PHONE]",
    "date": "[DATE]",
    "address": "[ADDRESS]",
    "zip": "[ZIP]",
    "name": "[NAME]",
    "age": "90+",
}

# Convention: if a pattern has named groups starting with "v" and one of them took
# part in the match, only that group is replaced, so the cue ("Dr.", "MRN:") stays.

# http(s)://, www. or a bare domain with a common TLD; trailing punctuation is left.
_URL = re.compile(
    r"(?:\b(?:https?://|www\.)"
    r"|(?<![@\w.-])(?=(?:[A-Za-z0-9-]+\.)+(?:com|org|net|gov|edu|io|info)\b))"
    r"[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"
)

# user@host.tld (the look-behind starts only at the head of a run: linear time)
_LOCAL = r"[A-Za-z0-9._%+-]"
_EMAIL = re.compile(rf"(?<!{_LOCAL}){_LOCAL}+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{{2,}}\b")

# Dotted-quad IPv4, and IPv6 either full (8 groups) or "::"-compressed.
_H = r"[0-9A-Fa-f]{1,4}"
_IP = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\w|\.\d)"
    rf"|(?<![\w:])(?:{_H}(?::{_H}){{7}}|{_H}(?::{_H})*::(?:{_H}(?::{_H})*)?|::{_H}(?::{_H})*)(?![\w:])"
)

# 123-45-6789 anywhere; nine digits (any grouping) only after an SSN label.
_SSN = re.compile(
    r"\b(?:SSN|social security(?: number| no\.?| #)?)[ \t]*(?:is|:|#)?[ \t]*"
    r"(?P<v>\d{3}[ -]?\d{2}[ -]?\d{4})\b"
    r"|(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])",
    re.IGNORECASE,
)

# A quantity, not an identifier: "200-1200 mg", "May 5 mg".
_NO_UNIT = (
    r"(?![ \t]*(?:%|(?i:mg|mcg|µg|g|kg|ml|l|iu|units?|mmhg|mmol|bpm|cells|copies|tabs?|tablets?|pills?"
    r"|caps?|capsules?|doses?|drops?|puffs?|times|steps|k?cal|lbs?|miles|km|min|minutes?|hours?|days?"
    r"|weeks?|months?|years?|percent)\b))"
)

# A label, an optional "number/no./#/ID", then a value of 4+ characters holding a
# digit.  Runs before phones: a labelled digit run is an ID whatever its shape.
_ID_LABEL = (
    r"MRN|medical record|record|chart|patient ID|member ID|subscriber ID|insurance ID|health plan(?: ID)?"
    r"|member|beneficiary(?: ID)?|Medicare|Medicaid|account|acct|policy|group|claim|case|reference|ref"
    r"|licen[cs]e|certificate|cert|passport|serial|device ID|VIN|plate|(?<!, )ID"  # not "Boise, ID 83702"
)
_MRN = re.compile(
    rf"\b(?:{_ID_LABEL})\b\.?(?:[ \t]+(?:number|num|no\.?|ID)\b\.?)?[ \t]*(?:is|was|:|#|-)?[ \t]*#?[ \t]*"
    rf"(?P<v>(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{{2,}}[A-Z0-9](?:[ ]\d{{4,}})*)\b(?![/.]\d){_NO_UNIT}",
    re.IGNORECASE,
)

# US numbers ((555) 123-4567, 555.123.4567, +1 ...), 555-1234, bare 10 digits,
# international "+CC ..." with at least 8 digits, trunk-0 national numbers
# (07700 900123); an "ext. 123" / "x123" tail is included.
_PHONE = re.compile(
    r"(?:(?<![\w+/.-])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    r"|(?<![\w+])\+(?=(?:[ ().-]*\d){8})\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}"
    r"|(?<![\w/.-])(?:\d{3}-\d{4}|\d{10}|\(?0\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}))"
    rf"(?:[ \t]*(?:ext\.?|x)[ \t]*\d{{1,5}})?(?![\w/-]){_NO_UNIT}"
)

# Numeric dates with two separators, month-name dates ("March 14, 2021", "14th of
# Mar", "Mar 2021") and month/day after a cue ("since 3/14").  Bare years, single
# slash ratios (5/325, 120/80, 24/7) and durations never match.
_MON = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|(?-i:May)|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_D = r"(?:0?[1-9]|[12]\d|3[01])"
_DAY = rf"{_D}(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d{2}"
_DATE = re.compile(
    rf"\b{_DAY}[ \t/-]+(?:of[ \t]+)?{_MON}(?:,?[ \t/-]+{_YEAR})?\b"
    rf"|\b{_MON}[ \t]+{_DAY}\b(?:,?[ \t]+{_YEAR}\b)?{_NO_UNIT}"
    rf"|\b{_MON},?[ \t]+{_YEAR}\b"
    rf"|(?<![\w/.-])(?:{_D}([/.-]){_D}\1(?:{_YEAR}|\d{{2}})|{_YEAR}([/.-])(?:0?[1-9]|1[0-2])\2{_D})"
    r"(?![\w/-]|\.\d)"
    r"|\b(?:on|since|from|until|till|by|dated|DOB:?|born)[ \t]+"
    rf"(?P<v>(?:0?[1-9]|1[0-2])/{_D})(?![\w/]|[ \t]*(?:tabs?|tablets?|pills?|caps?|doses?|mg)\b)",
    re.IGNORECASE,
)

# House number, optional direction, 1-3 capitalised words (or "5th"), a street
# suffix, then an optional apartment/suite/unit.  Capitalisation keeps "walk 5
# blocks on the way" out.
_SUFFIX = "|".join(
    f"[{w[0]}{w[0].lower()}]{w[1:]}"  # "Street"/"street" but not "ST" (ST elevation) or "CT" (scan)
    for w in "Street St Avenue Ave Road Rd Boulevard Blvd Lane Ln Drive Dr Court Ct Way Place Pl Terrace"
    " Ter Circle Cir Parkway Pkwy Highway Hwy Square Sq Trail Trl Crescent Close".split()
)
_ADDRESS = re.compile(
    r"\b\d{1,6}[ \t]+(?:(?:[NSEW]\.?|North|South|East|West)[ \t]+)?"
    rf"(?:(?:[A-Z][a-z]+|\d{{1,3}}(?:st|nd|rd|th))[ \t]+){{1,3}}(?:{_SUFFIX})\b\.?"
    r"(?:,?[ \t]*(?i:apt|apartment|suite|ste|unit|#)\.?[ \t]*#?[ \t]*[A-Za-z0-9-]+)?"
    r"|\bP\.?[ \t]?O\.?[ \t]+Box[ \t]+\d+"
)

# Five (or 5+4) digits after a US state code, or after a "zip"/"postal code" label.
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ"
    "|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_ZIP = re.compile(
    rf"\b(?:{_STATES}),?[ \t]+(?P<v>\d{{5}}(?:-\d{{4}})?)\b"
    r"|\b(?i:zip(?:[ \t]*code)?|postal[ \t]+code)[ \t]*(?:is|:|#)?[ \t]*(?P<v2>\d{5}(?:-\d{4})?)\b"
)

# Names need a cue; capitalised words that often follow a cue but are not names are
# refused ("I am Worried", "Thanks, Doctor", "Dr. Appointment").
_NOT_NAMES = (
    "I A An The This That These Those It He She We They You Your My Me Our His Her Their Is Am Are"
    " Was Were Be Been Have Has Had Do Does Did Not No Yes So Very Also Just Still Now Then Here There"
    " Please Thanks Thank Hello Hi Hey Dear Sir Madam Doctor Doc Dr Mr Mrs Ms Miss Mx Prof Professor"
    " Team All Everyone Again In On At For From With To Of And But Or If When What Why How Who Which"
    " Where Can Could Should Would Will May Might Must Sure Sorry Glad Happy Worried Scared Afraid"
    " Concerned Confused Anxious Nervous Tired Sick Ill Pregnant Diabetic Hypertensive Allergic"
    " Asthmatic Married Single Divorced Male Female Type Currently Really Always Never Only Unable"
    " Able Fine Okay Ok Well Better Worse Good Bad New Old Young Regards Best Advance Appointment"
    " Today Tomorrow Yesterday Monday Tuesday Wednesday Thursday Friday Saturday Sunday Hospital"
    " Clinic Medical Center Health Patient Nurse Vitamin Covid Emergency Office Department Iam Im"
    " Morning Evening Afternoon Greetings Muslim Hindu Christian Jewish Catholic Hispanic Latino Latina"
    " Asian African American Indian British Canadian European Vegan Vegetarian"
    " Sie Ihr Ihre Ihnen Du Dich Dir Euch"  # German "you": "ich heiße Sie/Dich herzlich willkommen" (I welcome you)
    " Diabético Diabética Alérgico Alérgica Celíaco Celíaca Médico Médica Enfermero Enfermera Paciente"
    " Madre Padre Estudiante Residente"  # "Soy Diabética y tengo 50 años": capitalised conditions and roles
    " Doktor Doktorin Docteur Doctora Leute Zusammen Amigos Todos"  # "Hallo Doktor,", "Hallo Leute,", "Hola Todos,"
).split()
_UP, _LO = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
_TOKEN = (
    rf"(?!(?:{'|'.join(_NOT_NAMES)})\b)"
    rf"(?![{_UP}][{_LO}]+(?:ing|ied|ated|ened|ssed|ful|ous|ology)\b)"  # Having, Worried, Cardiology
    rf"(?:[{_UP}]['’])?[{_UP}][{_LO}]+(?:-?[{_UP}][{_LO}]+)?\b"  # O'Brien, McDonald, Smith-Jones
)
_FULL = rf"(?:[{_UP}]\.[ \t]?)?{_TOKEN}(?:[ \t]+(?:[{_UP}]\.[ \t]?)?{_TOKEN}){{0,2}}"
_RELATIVE = (
    r"son|daughter|wife|husband|mother|mom|mum|father|dad|brother|sister|partner|boyfriend|girlfriend"
    r"|friend|ex|fianc[eé]e?|child|kid|twin|roommate|neighbou?r|colleague|baby|grandson|granddaughter"
    r"|grandmother|grandfather|grandma|grandpa|aunt|uncle|niece|nephew"
)

# "Im" without its apostrophe ("Im Sarah and I have a rash", a common typo in consumer questions) is a
# self-introduction cue, but "im" is also German ("in dem"): "Im Notfall", "999 im Vereinigten Königreich",
# "im Beipackzettel". German capitalises every noun, so the word after "im" cannot tell a name from a noun (a
# list of first names could, but no list covers the names patients have, and a missed name is a leak). What
# can tell them apart is the text around it: in German text the apostrophe-less cue is dropped ("I'm" and
# "I am" stay cues). German is judged by counting words: German function words and words with ä/ö/ü/ß against
# English function words. The lists leave out words both languages use ("in", "an", "am", "so", "was", "will",
# "also", "um"), so one English typo is not outvoted by a shared word. Why not py3langid, which the guard uses
# (safety/features.language): the data layer sits below safety, langid is unreliable on a phrase, and this
# runs on every training row; word counts are auditable and fire on "999 im Vereinigten Königreich" alone.
# A tie (no evidence: "Im Sarah.") keeps the cue, so English recall is unchanged; a German phrase with no
# function word and no umlaut ("Im Notfall: 112") is still read as a name unless the caller says lang="de".
# No other cue is an ordinary word in Spanish, French or German ("Doctor", "Dr", "Prof", "Name:" and
# "Patient:" precede names there too); the "- Anna" line cue is checked against bullet lists in _in_list.
_DE_WORDS = frozenset(
    "der die das dem den des und ist sind nicht sie ich wir ihr ihre ihnen ihren mir mich uns mit von zu vom zum"
    " zur ein eine einem einen einer eines kein keine nichts auf für bei beim nach wie oder auch sich es wenn dass"
    " aber noch nur schon sehr seit aus über unter ohne weil hat habe haben wird werden kann können soll sollten"
    " muss bitte jetzt immer mein meine meinem meinen hier dort ins".split()
)
_EN_WORDS = frozenset(
    "i me my you your he she it we they the a and or but not no of to for with on at from by is are was were be"
    " been have has had do does did can could should would this that what how why when if because about after"
    " since just".split()
)
_WORD = re.compile(rf"[{_UP}{_LO}]+")


def _reads_german(text: str) -> bool:
    """More German evidence (function words, words with ä/ö/ü/ß) than English function words in `text`."""
    words = _WORD.findall(text.lower())
    german = sum(w in _DE_WORDS or any(c in "äöüß" for c in w) for w in words)
    return german > sum(w in _EN_WORDS for w in words)


# Self-introductions in Spanish, French and German are cues like "my name is": "me llamo", "mi nombre es",
# "je m'appelle", "mon nom est", "ich heiße"/"ich heisse", "mein Name ist". A capitalised word after them is a
# name (German "ich heiße Sie willkommen": "Sie" is refused in _NOT_NAMES). "soy" ("I am") is weaker on both
# sides. Spanish writes diseases, nationalities and religions in lower case ("soy diabético", "soy alérgico",
# "soy mexicano"), so they never match; but a capitalised word after it is not always a name ("soy Testigo de
# Jehová", "soy Leo", and in English "Soy Protein Isolate", "Soy Milk Formula"). So "soy" wants a full name,
# two or three capitalised words ("soy Ana García"), or one followed by "tengo" ("soy Ana y tengo 34 años",
# "soy Ana, tengo…": how a patient goes on after saying who they are); a lone "soy Ana." is missed. And it is
# dropped where "soy" is the English word: lang="en", or more English-only function words than Spanish ones
# (the English list less "a", "me", "no", "he", "has", which Spanish uses too). A tie keeps the cue.
_ES_WORDS = frozenset(
    "de del la las el los y que en con por para pero muy mi mis su sus tengo tiene tenía estoy está están es"
    " un una unos unas lo le les se al hola años hace desde cuando como también porque sobre hasta ya yo usted"
    " gracias".split()
)
_EN_ONLY_WORDS = _EN_WORDS - {"a", "me", "no", "he", "has"}


def _reads_english(text: str) -> bool:
    """More English-only function words than Spanish evidence (function words, words with á/é/í/ó/ú/ñ)."""
    words = _WORD.findall(text.lower())
    spanish = sum(w in _ES_WORDS or any(c in "áéíóúñ" for c in w) for w in words)
    return sum(w in _EN_ONLY_WORDS for w in words) > spanish


# A line that is one bullet ("- ", "* ", "• ", "1. ") of a list.
_BULLET = re.compile(r"[ \t]*(?:[-*•–][ \t]*\S|\d{1,2}[.)][ \t])")


def _in_list(text: str, start: int) -> bool:
    """Whether the "- Anna" line matched at `start` is a list item ("- Fever", "- Fieber": capitalised words
    like a name) rather than a signature: nothing is written before it (the output guard scrubs line by line),
    or the line above ends with ":" or is a bullet, or the line below is a bullet. A signature ends a message."""
    before = text[:start].rstrip()
    if not before:
        return True
    if not text[:start].endswith("\n"):  # "... thanks. - Anna" on one line
        return False
    above = before.rsplit("\n", 1)[-1]
    below = text[start:].split("\n", 1)[1:]  # the text after the line, blank lines skipped
    below_line = below[0].lstrip() if below else ""
    return above.endswith(":") or bool(_BULLET.match(above) or _BULLET.match(below_line))


def _name_rule(*, im: bool, soy: bool) -> re.Pattern[str]:
    """The name rule; `im`: the apostrophe-less "I'm" is a cue (not in German text: see _reads_german); `soy`:
    Spanish "soy" is a cue (not in English text: see _reads_english)."""
    im_cue = r"[Ii]m|" if im else ""
    return re.compile(
        r"(?:\b(?:[Mm]rs?|M[sx]|Miss|[Dd]r|[Pp]rof|Sra?|Mme|Mlle)\.?[ \t]+"  # honorific;
        r"|\b(?:[Dd]octor|[Pp]rofessor)[ \t]+"
        # "doctor." ends a sentence ("Talk to your doctor. Find out …"), so the long forms take no period
        r"|\b(?:Herr|Frau|Se[ñn]ora?|Monsieur|Madame)[ \t]+"  # es/fr/de honorifics: "Frau Schmidt", "Sra. Pérez"
        rf"|\b(?:[Mm]y (?:full )?name is|[Mm]y name's|[Nn]ame is|[Tt]his is|I am|I['’]m|{im_cue}[Cc]all me"
        r"|[Mm]e llamo|[Mm]i nombre es|[Jj]e m['’]appelle|[Mm]on nom est|[Ii]ch hei(?:ß|ss)e|[Mm]ein [Nn]ame ist)"
        r"[ \t]+"  # self-introduction (English, Spanish, French, German)
        r"|\b(?:[Pp]atient(?: [Nn]ame)?|[Pp]t|[Ff]ull [Nn]ame|[Nn]ame)[ \t]*:[ \t]*"  # form fields
        rf"|\b[Mm]y[ \t]+(?:[\w-]+[ \t]+){{0,3}}(?:{_RELATIVE})[ \t]*,?[ \t]+"  # "my twin sister Hannah"
        r"|\b(?:(?:[Bb]est|[Kk]ind|[Ww]arm) (?:[Rr]egards|[Ww]ishes)|[Rr]egards|[Tt]hanks|[Tt]hank you"
        r"|[Mm]any thanks|[Ss]incerely|[Ss]igned|[Cc]heers|[Bb]est|[Yy]ours(?: truly| sincerely)?)"
        r"[ \t]*[,\n][ \t\n]*)"  # sign-off: "Regards, John"
        rf"(?P<v>{_FULL})"
        r"|\b[Mm]y name is[ \t]+(?!(?:not|a|an|the|withheld|private|confidential|anonymous)\b)"
        rf"(?P<v2>[{_LO}]+(?:[ \t]+(?!(?:and|i|im|from|aged?|am|my|with|but|so|is|was)\b)[{_LO}]+)?)"
        rf"|(?:^|(?<=[\n.!?]))[ \t]*-{{1,2}}[ \t]*(?P<v3>{_FULL})(?=[ \t]*(?:\n|$))"  # "- Anna" ends a line
        rf"|\b(?:[Hh]i|[Hh]ello|[Hh]ey|[Dd]ear|[Hh]ola|[Bb]uenos d[íi]as|[Bb]onjour|[Ss]alut|[Hh]allo|[Gg]uten [Tt]ag)"
        rf"[ \t]+(?P<v4>{_FULL})(?=[ \t]*[,!\n])"  # greeting (en, es, fr, de)
        + (rf"|\b[Ss]oy[ \t]+(?P<v5>{_TOKEN}(?:[ \t]+{_TOKEN}){{1,2}}"  # "soy Ana García"
           rf"|{_TOKEN}(?=[ \t]*,?[ \t]+(?:y[ \t]+)?tengo\b))" if soy else "")  # "soy Ana y tengo"
    )


#: (im, soy) -> the name rule with those cues; _NAME (both) is the default in _RULES.
_NAMES = {(im, soy): _name_rule(im=im, soy=soy) for im in (True, False) for soy in (True, False)}
_NAME = _NAMES[True, True]

# Ages over 89 ("age 93", "93 years old", "93-year-old", "93 y/o") become "90+".
_AGE = re.compile(
    rf"\b(?:aged?|I am|I['’]m)[ \t]*:?[ \t]*(?P<v>9\d|1[01]\d)\b(?![/.,]\d){_NO_UNIT}"
    r"|\b(?P<v2>9\d|1[01]\d)(?=[ \t-]*(?:years?|yrs?)[ \t-]*old\b|[ \t-]*(?:yo|y/o|y\.o\.)(?!\w))",
    re.IGNORECASE,
)

#: Application order.  URLs and e-mails first (their digits and dots would
#: otherwise feed the phone, IP and date rules), IPs before dates ("10.1.2.3"),
#: SSNs and labelled IDs before phones, dates before addresses, and names last so
#: that a placeholder can never be mistaken for a cue.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", _URL),
    ("email", _EMAIL),
    ("ip", _IP),
    ("ssn", _SSN),
    ("mrn", _MRN),
    ("phone", _PHONE),
    ("date", _DATE),
    ("address", _ADDRESS),
    ("zip", _ZIP),
    ("name", _NAME),
    ("age", _AGE),
)


# Numbers of services, not of people: US toll-free numbers (Poison Help 1-800-222-1222, lifelines) and the
# helplines medtune's own texts name. Scrubbing them would hide the number a person in trouble needs.
_TOLL_FREE = re.compile(r"^1?8(?:00|33|44|55|66|77|88)\d{7}$")
_HELPLINES = {"08001110111", "08001110222", "915620420", "8009112000"}


def _public_number(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return bool(_TOLL_FREE.match(digits)) or digits in _HELPLINES


def _apply(kind: str, pattern: re.Pattern[str], text: str, counts: dict[str, int]) -> str:
    """Replace every match of ``pattern`` (or just its ``v*`` group) and count it."""

    def repl(m: re.Match[str]) -> str:
        if kind == "phone" and _public_number(m.group()):
            return m.group()
        if kind == "name" and m.groupdict().get("v3") is not None and _in_list(m.string, m.start()):
            return m.group()
        start, end = m.span()
        for group in pattern.groupindex:
            if group.startswith("v") and m.group(group) is not None:
                start, end = m.span(group)
                break
        counts[kind] = counts.get(kind, 0) + 1
        whole = m.group()
        return whole[: start - m.start()] + PLACEHOLDERS[kind] + whole[end - m.start() :]

    return pattern.sub(repl, text)


def scrub(text: str, lang: str | None = None) -> tuple[str, dict[str, int]]:
    """Return ``text`` with PHI replaced by placeholders, and counts per kind found.

    The text is NFC-normalised first so that a decomposed accent (``e`` + U+0301)
    matches the name rules; NFC leaves already-composed and ASCII text unchanged.
    Kinds with no hit are absent from the counts. ``lang``: the language the text is
    known to be in, when the caller knows it (the output guard scrubs one sentence
    at a time, too little to judge); "de" drops the apostrophe-less "Im" name cue,
    which German text also drops when judged from its words; "en" drops the Spanish
    "soy" cue, which English text also drops, unless ``lang`` is "es".
    """
    counts: dict[str, int] = {}
    text = unicodedata.normalize("NFC", text)
    german = lang == "de" or _reads_german(text)
    english = lang == "en" or (lang != "es" and _reads_english(text))
    names = _NAMES[not german, not english]
    for kind, pattern in _RULES:
        text = _apply(kind, names if kind == "name" else pattern, text, counts)
    return text, counts
