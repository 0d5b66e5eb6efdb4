"""Training-data policy filter: answers must not teach what the safety guard forbids.

Why this exists: the output guard (medtune.safety.output_guard) strips personal dosing from a model's
answers, and the system prompt says "never diagnose or give personal doses", but doctor-chat datasets
(ChatDoctor, HealthCareMagic, iCliniq, GenMedGPT) are full of answers that do exactly that ("it sounds
like you may have panic disorder", "take tab. amoxicillin 500 mg three times a day", "I will prescribe
you ..."). Fine-tuning on them teaches the behaviour the guard then has to cut. This filter runs on every
assistant turn during `prepare`:

- personal dosing or prescribing -> the conversation is dropped (reason "personal_dosing"). Caught: the
  output guard's personal-dosing regex (`gives_personal_dosing`: "you should take 400 mg", "take 2 tablets",
  "I'll prescribe", "your dose is 5 ..."), plus forms common in doctor chats: "tab./cap./syp./inj. NAME
  500 mg", prescription shorthand after a dose ("40 mg OD/BD/TDS/SOS"), "I am going to prescribe",
  "we'll prescribe", "start/put you on ...", and telling the asker which medicines to take ("you will need
  to take Warfarin, Digoxin ...", "I suggest you take an NSAID like ...", "the medications you need are ...").
- diagnosing the asker -> the diagnosing sentence is rewritten as a hedge when that reads cleanly
  ("Based on your symptoms, it seems you are suffering from X." -> "Possible causes include X; only a
  clinician who examines you can tell."), otherwise the conversation is dropped (reason "diagnoses_asker").
  Caught: second-person statements that the asker has a condition: "you are suffering from X", "it
  sounds/seems like you (may) have X", "it is possible that you have X", "I suspect you have X", "you may
  be experiencing X", "you seem to have X", "you have developed/contracted X", "I diagnose you with X",
  and a bare "you have X" when X looks like a condition (a UTI, diabetes, ...-itis, ... infection).
  A rewrite is "clean" when only a lead-in ("Yes, based on your symptoms, it seems that") stands before the
  clause, X is a plain noun phrase (a trailing ", which ..." is cut when it would not read), and the answer
  has one diagnosing sentence; a row with two, or "you may have dislocated your elbow", is dropped.

What passes: general information with no personal instruction ("The usual adult dose on the label is
...", "Diabetes is diagnosed with an HbA1c test", "Some people with X take Y; ask your doctor"), conditional
and question forms ("If you have chest pain, call 911", "Do you have a fever?", "tests show whether you have
X"), hedged medicine talk ("you may need antibiotics"), refusals ("I can't prescribe medicines"), and the
generic "you" of patient leaflets ("You may have flu-like symptoms", "Call your doctor if: You have
symptoms of X"). Measured when written: GenMedGPT-5k 646 dropped for dosing/prescribing, 71 for diagnoses,
3,435 rewritten of 5,452; MedQuAD + WikiDoc + MEDIQA (22,578 rows) 14 touched; the built-in set 0 (prepare
also exempts it by construction).

What it does not catch (known gaps, by design kept simple): impersonal diagnoses ("it's probably a UTI",
"these symptoms are due to X"), adjective forms ("you're dehydrated", "you are anemic"), negative
diagnoses ("you don't have cancer"), diagnoses after a time clause ("after the fall you have developed X"),
drugs named only in lower case without a dose or a medicine word, and anything not in English. A few
leaflet sentences are still taken as diagnoses ("You may have mild anemia."). User and system turns are
never changed. Sentences are cut as the output guard cuts them (`data.sentences`: not at "e.g.", "Dr.", "U.S. or").
"""

from __future__ import annotations

import re

from medtune.data.dosing import gives_personal_dosing
from medtune.data.formats import Conversation
from medtune.data.sentences import sentences, split_sentences

PERSONAL_DOSING = "personal_dosing"
DIAGNOSES_ASKER = "diagnoses_asker"
HEDGE = "Possible causes include {x}; only a clinician who examines you can tell."

_NEGATION = re.compile(r"\b(?:not|never|unable|cannot|unlikely|no longer)\b|n't\b", re.IGNORECASE)
# a clause that makes what follows hypothetical or about someone else ("If you have chest pain, ...")
_CONDITIONAL = re.compile(
    r"\b(?:if|when|whenever|whether|unless|in case|once|until|while|who|whom|where|wherever|since|because"
    r"|as long as|though|although|(?:after|before)(?! (?:hearing|listening|reviewing|examining|looking|reading)))\b",
    re.IGNORECASE)

# ---- personal dosing and prescribing -------------------------------------------------------------------
_DOSE = r"\d[\d.,/-]*\s*(?:mg|mcg|µg|g|gm|ml|iu|units?)\b"
_NOT_A_NAME = r"(?!(?:are|is|was|in|of|the|a|an|and|or|come|comes|available|contain|contains|usually|often)\b)"
_EXTRA_DOSING = re.compile(
    # ChatDoctor / iCliniq prescriptions: "tab. amoxicillin 500 mg", "Cap Omez 20 mg", "syp. ... 5 ml"
    r"\b(?:tabs?|caps?|syp|syr|inj)\b\.?\s*" + rf"(?:{_NOT_A_NAME}[A-Za-z][\w+-]*\.?\s+){{1,3}}{_DOSE}"
    # a dose followed by prescription shorthand (case-sensitive: label text does not write "BD")
    + rf"|{_DOSE}[^.?!\n]{{0,25}}\b(?-i:OD|BD|BID|TDS|TID|QID|QDS|HS|SOS|PRN|q\d+h)\b",
    re.IGNORECASE,
)
_MED_WORD = (r"(?:medications?|medicines?|meds|drugs?|antibiotics?|antivirals?|antifungals?|antihistamines?"
             r"|painkillers?|pain relievers?|analgesics?|NSAIDs?|steroids?|corticosteroids?|antidepressants?"
             r"|creams?|ointments?|tablets?|pills?|capsules?|inhalers?|injections?|syrups?|lotions?|eye ?drops"
             r"|ear ?drops|prescriptions?|a combination of|a course of|the following)")
_DRUG_SUFFIX = (r"[a-z]*(?:cillin|mycin|micin|floxacin|cycline|azole|prazole|tidine|olol|pril|sartan|statin|dipine"
                r"|azepam|zolam|oxetine|triptan|profen|ciclovir|cyclovir|vir|mab|sone|olone|formin|parin|xaban"
                r"|codone|morphine|fentanyl|cetamol|aminophen|aspirin|naproxen|insulin|zine|pine|done|pam)")
# a capitalised word that is not the first of the sentence ("take Warfarin, Digoxin ...")
_DRUG_NAME = r"(?-i:[A-Z][a-z]{3,})"
_FILLER = (r"(?:(?:a|an|the|some|these|those|this|your|other|new|more|additional|strong|stronger|topical|oral"
           r"|prescription|over-the-counter|otc|certain|specific|appropriate|proper|several|multiple|few|different"
           r"|anti-inflammatory|antibiotic|steroid|pain|acid|allergy|cough|sleeping|nasal|medicated|daily)[ -])")
_MED = rf"(?:{_FILLER}{{0,3}}(?:{_MED_WORD}|(?:topical )?products? (?:like|such as))\b|{_DRUG_SUFFIX}\b|{_DRUG_NAME}\b)"
# in "you will need to take ...", a generic word counts only when the drugs are named ("antibiotics such as X")
_NAMED_MED = (rf"(?:{_FILLER}{{0,3}}(?:a combination of|a course of|the following)\b|{_FILLER}{{0,3}}{_MED_WORD}"
              rf"\s+(?:such as|like|including|called)\b|{_DRUG_SUFFIX}\b|{_DRUG_NAME}\b)")
_MODALS = (r"(?:\s+(?:will|would|shall|should|can|could|may|might|must|am|are|also|then|first|now|just|need to"
           r"|have to|want to|like to|going to|gonna|be)|'ll|'d|'m|'re)*")
_PRESCRIBING = [
    # "I will prescribe", "we'll prescribe you", "I am prescribing", "we can start you on"
    re.compile(rf"\b(?:I|we){_MODALS}\s+(?:prescrib(?:e|ing)|start(?:ing)? you on|put(?:ting)? you on"
               r"|give you (?:a prescription|some medications?|medications?)|write you a prescription)\b",
               re.IGNORECASE),
    # "we'll need to clean the wound and prescribe antibiotics"
    re.compile(r"\b(?:I|we)\b[^.?!\n;]{0,60}\band (?:prescribe|start you on|put you on)\b", re.IGNORECASE),
    # "You will need to take Warfarin", "you need a combination of medications", "you require medications"
    re.compile(rf"\b(?-i:[Yy]ou(?:'ll| will| would)?(?: also)? (?:need|require|have to|must|should))(?: to)?"
               rf"(?: (?:take|use|start|be given|be started on|be put on|be treated with))? {_NAMED_MED}",
               re.IGNORECASE),
    # "I suggest you take an NSAID like ...", "I recommend that you take Methadone", "I recommend a cream"
    re.compile(rf"\b(?:I|we)(?:'d| would| will| strongly| also)* (?:recommend|suggest|advise|prescribe)(?: that)?"
               rf"(?: you)?(?: to)?(?: (?:take|taking|use|using|start|starting|try|trying))? {_MED}", re.IGNORECASE),
    # "the medications you need are ...", "the required medication for your condition is ..."
    re.compile(rf"\bthe {_MED_WORD} (?:that )?you (?:need|require)(?: are| is| include)\b"
               rf"|\b(?:required|recommended|prescribed) {_MED_WORD} for your\b"
               rf"|\b{_MED_WORD} (?:required|needed) for (?:your|this)\b", re.IGNORECASE),
]
_SOMEONE_ELSE_DECIDES = re.compile(r"\b(?:your|a|the) (?:doctor|clinician|pharmacist|nurse|prescriber|care team)\b",
                                   re.IGNORECASE)


def _plain(text: str) -> str:
    """Typographic apostrophes as ASCII (same length, so positions still match the original)."""
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _gives_prescription(sentence: str) -> bool:
    """One sentence tells the asker which medicine to take, or that the speaker prescribes it."""
    for pattern in _PRESCRIBING:
        for m in pattern.finditer(sentence):
            before = sentence[: m.start()]
            if _NEGATION.search(m.group(0)) or _CONDITIONAL.search(before) or _SOMEONE_ELSE_DECIDES.search(before):
                continue
            if re.search(r"(?:please )?\b(?:ask|tell|check with|talk to|speak to)\b[^.?!]*$", before, re.IGNORECASE):
                continue  # "ask your doctor whether you need antibiotics"
            return True
    return False


def gives_personal_dosing_or_prescribing(text: str) -> bool:
    """The output guard's personal-dosing test, extended with doctor-chat prescription forms."""
    if gives_personal_dosing(text) or _EXTRA_DOSING.search(text):
        return True
    return any(_gives_prescription(s) for s in sentences(text))


# ---- diagnosing the asker -----------------------------------------------------------------------------
# words before "you" that make it a judgement about this asker ("it sounds like you ...", "I suspect you ...")
_CUE = re.compile(
    r"\b(?:it|this|that)(?:'s| is| does| really)?\s*(?:seems?|sounds?|appears?|looks?)\b"
    r"|\bi(?: am|'m)? (?:think|believe|suspect|feel|concerned|afraid|would say|'d say)\b|\bbased on\b"
    r"|\bfrom what you\b|\bmy (?:guess|impression|suspicion|diagnosis)\b"
    r"|\b(?:possible|likely|probable|chances are|possibility|chance) that\b", re.IGNORECASE)
_MOD_CUE = re.compile(r"probably|likely|seem|appear", re.IGNORECASE)
# patient-leaflet items said to any reader ("Call your doctor if: You have symptoms of X ...")
_LEAFLET_X = re.compile(r"(?:symptoms|signs|a (?:family )?history|risk factors?|relatives|a certain gene)\b|.*\b(?:"
                        r"symptoms?|signs?|tests?|effects|affects|problems)\b|.*\b(?:and|or) (?:develop|have|are|the|"
                        r"your|you|symptoms|another)\b", re.IGNORECASE)
_YOU_CLAUSE = re.compile(
    r"\byou(?P<mod>(?:'re|'ve|\s+are|\s+may|\s+might|\s+could|\s+probably|\s+likely|\s+most likely|\s+seem to"
    r"|\s+appear to|\s+definitely|\s+clearly|\s+possibly|\s+also|\s+be|\s+now)*)\s+(?P<verb>suffering from|"
    r"experiencing|having|going through|dealing with|struggling with|affected by|(?:be )?infected with|"
    r"have developed|developed|have contracted|contracted|have caught|caught|have got|got|have)\s+"
    r"(?=(?P<x>[^.?!]*))",
    re.IGNORECASE)
_DIAGNOSE = re.compile(r"\b(?:I|we)(?:'d| would| can| will)? diagnose you with\s+(?P<x>[^.?!]*)"
                       r"|\bmy diagnosis is(?: that of)?\s+(?P<x2>[^.?!]*)", re.IGNORECASE)
_STRONG_VERBS = {"suffering from", "have developed", "developed", "have contracted", "contracted", "have caught",
                 "caught", "infected with", "be infected with"}
# "you may have dislocated your elbow": a diagnosis, but not one that rewrites as "possible causes include X"
_INJURY = re.compile(r"(?:dislocated|fractured|broken|broke|sprained|strained|torn|tore|pulled|injured|damaged|"
                     r"ruptured|twisted|bruised|cracked|herniated)\b", re.IGNORECASE)
# what follows "you have"/"you are having" when it is not a condition
_NOT_A_CONDITION = re.compile(
    r"(?:been|had|to|any|no|not|some (?:questions?|concerns?|time|options?)|questions?|concerns?|a (?:question|"
    r"right|choice|chance|look|few|lot of|hard time|good|great)|lots? of|a lot|the right|an? (?:appointment|"
    r"option|idea|opportunity)|options?|time|trouble|difficulty|problems? (?:with|sleeping|breathing)|side effects?|"
    r"it|this|that|them|these|those|your|already|done|made|seen|taken|given|heard|noticed|tried|mentioned|"
    r"described|said|told|asked|read|found|felt|used|missed|got|gotten|received|started|stopped|eaten|lost|gone|"
    r"come|known|shown|grown|worn|begun|run|put|kept|left|thought|brought|bought|held|sent|spent|met|drunk|"
    r"are|is|was|were|can|could|may|might|will|would|should|do|does|did|and|or|but|as|in|at|on|for|from|"
    r"now|right now|recently|lately|so far|before|yet|"
    r"thoughts? (?:of|about)|urges? to|feelings? (?:of|about)|mixed|more|less|enough|symptoms?\b(?! of)"
    r"|[a-z]+ed\b(?<!bed)(?<!red)(?<!need))\b",  # "you have noticed", "you may have been told"
    re.IGNORECASE)
_GENERAL_TAIL = re.compile(r"\b(?:if|when|whenever|unless|once|during|while|after|before)\b", re.IGNORECASE)
# a bare "you have X" (no hedge word, no modal) counts only when X looks like a condition
_CONDITION_WORD = re.compile(
    r"\b(?:\w+(?:itis|osis|emia|aemia|oma|pathy|algia|plasia|iasis|ism|ectasis|rrhea|rrhoea)|syndrome|disorder|"
    r"disease|infection|deficiency|cancer|tumou?r|fracture|sprain|strain|ulcer|hernia|allergy|anemia|anaemia|"
    r"diabetes|hypertension|asthma|flu|influenza|cold|uti|std|sti|migraine|depression|anxiety|insomnia|"
    r"pneumonia|bronchitis|sinusitis|gout|eczema|psoriasis|acne|cyst|stones?|reflux|gerd|ibs|pcos|herpes|"
    r"shingles|malaria|dengue|typhoid|tuberculosis|tb|covid(?:-19)?|virus|pregnancy|condition|problem with)\b",
    re.IGNORECASE)
# what may stand before the diagnosing clause for a clean rewrite (it is dropped)
_LEAD_ONLY = re.compile(
    r"^(?:(?:yes|well|okay|ok|so|alright|hmm|i see|i understand|right|unfortunately|however|hello|hi|i'm afraid"
    r"|i am afraid|thanks?(?: you)?(?: for (?:your|the) (?:query|question))?)[,.!]?\s*)*"
    r"(?:(?:based on|from|given|judging (?:by|from)|considering|according to|with|after hearing|upon|looking at"
    r"|listening to|hearing) [^.]{0,120}?,?\s*)?"
    r"(?:(?:it|this)(?:'s| is| does| really)?\s*(?:seems?|sounds?|appears?|looks?)(?: to me)?(?: likely| possible)?"
    r"(?: like| that| as if| as though)?"
    r"|it(?:'s| is| could be| may be| might be| seems| appears) (?:quite |very |most |more |highly |also |actually )?"
    r"(?:possible|likely|probable)?(?: that)?"
    r"|i (?:think|believe|suspect|feel|would say|'d say)(?: that)?|my (?:guess|impression|suspicion) is(?: that)?"
    r"|chances are(?: that)?|there(?:'s| is) a (?:good |high |strong )?(?:chance|possibility|likelihood) that"
    r"|(?:this|that|(?:these|those|the|your) symptoms(?: you(?:'ve| have)? (?:described|mentioned))?)"
    r"(?: could| may| might)? (?:suggests?|indicates?|means?|sounds? like)(?: that)?)?\s*$",
    re.IGNORECASE)
_X_LEAD = re.compile(r"^(?:(?:the |some )?(?:symptoms|signs) of|a case of|an? (?:episode|bout) of|a (?:medical )?"
                    r"condition (?:called|known as))\s+", re.IGNORECASE)
_X_TAIL = re.compile(r",|\s+(?:which|that|causing|leading|due to)\s", re.IGNORECASE)
_X_UNCLEAN = re.compile(r"\b(?:you|I|we|me|us)\b|[:;\"]|\bPatient\b", re.IGNORECASE)


def _diagnosis(sentence: str) -> tuple[int, str] | None:
    """(start of the diagnosing clause, the condition X) when the sentence tells the asker they have X."""
    if sentence.rstrip().endswith("?"):
        return None
    m = _DIAGNOSE.search(sentence)
    if m and not _NEGATION.search(sentence[: m.start()]) and not _CONDITIONAL.search(sentence[: m.start()]):
        x = (m.group("x") or m.group("x2") or "").strip()
        if x and not _NOT_A_CONDITION.match(x):
            return m.start(), x
    for m in _YOU_CLAUSE.finditer(sentence):
        before, mod, verb, x = sentence[: m.start()], m.group("mod"), m.group("verb").lower(), m.group("x").strip()
        if _CONDITIONAL.search(before) or _NEGATION.search(before[-40:]) or not x:
            continue
        cue = bool(_CUE.search(before) or _MOD_CUE.search(mod))
        if not cue and verb not in _STRONG_VERBS and not _LEAD_ONLY.match(before):
            continue  # "tests can confirm that you have X", "tell your dentist you have diabetes"
        if verb == "have" and re.match(_INJURY.pattern + r"\s+(?:your|a|the|my)\b", x, re.IGNORECASE):
            return m.start(), x  # the hedge rewrite rejects it (a verb phrase is not a cause)
        if _NOT_A_CONDITION.match(x):
            continue
        if verb in ("have", "having", "got", "have got") and re.match(r"(?:to|got to)\b", x, re.IGNORECASE):
            continue
        if cue:
            return m.start(), x  # "it sounds like you may have X", "you seem to have X", "you probably have X"
        # without a cue, "you" may be anyone (patient leaflets): "you may be infected with herpes when ...",
        # "- You have symptoms of X", "You have X and develop Y", run-together "You have X You have Y" items
        if _GENERAL_TAIL.search(x) or _LEAFLET_X.match(x) or re.match(r"\s*[-*•]", sentence):
            continue
        if verb not in _STRONG_VERBS and len(re.findall(r"\byou\b", sentence, re.IGNORECASE)) > 1:
            continue
        if verb in _STRONG_VERBS or _CONDITION_WORD.search(x):
            return m.start(), x  # "you are suffering from X", "you have a UTI"; not "you may have many symptoms"
    return None


def check_assistant(text: str) -> str | None:
    """Why this assistant text breaks the training-data policy ("personal_dosing" / "diagnoses_asker"), or None."""
    text = _plain(text)
    if gives_personal_dosing_or_prescribing(text):
        return PERSONAL_DOSING
    if any(_diagnosis(s) for s in sentences(text)):
        return DIAGNOSES_ASKER
    return None


def _hedge_sentence(sentence: str) -> str | None:
    """The diagnosing sentence as a hedge, or None when the result would not read cleanly."""
    found = _diagnosis(_plain(sentence))
    if found is None:
        return sentence
    start, x = found
    if not _LEAD_ONLY.match(_plain(sentence[:start])):
        return None  # something other than a lead-in ("The pain is normal, but you have X") comes first
    x = _X_LEAD.sub("", x.strip().rstrip(",;: ")).strip()
    for candidate in (x, _X_TAIL.split(x, maxsplit=1)[0].strip()):  # the whole phrase, or its head
        if 2 <= len(candidate) <= 160 and not _X_UNCLEAN.search(candidate) and not _INJURY.match(candidate) \
                and candidate.count("(") == candidate.count(")"):
            return HEDGE.format(x=candidate)
    return None


def rewrite_assistant(text: str) -> str | None:
    """Text with every diagnosing sentence hedged, or None when a sentence cannot be rewritten cleanly."""
    parts = split_sentences(text)
    for k in range(0, len(parts), 2):
        new = _hedge_sentence(parts[k])
        if new is None:
            return None
        parts[k] = new
    out = "".join(parts)
    return out if out.count("Possible causes include") <= 1 and check_assistant(out) is None else None


def apply(conv: Conversation) -> tuple[Conversation | None, str | None]:
    """Decide one conversation: (conv, None) passes unchanged, (rewritten, "diagnoses_asker") was rewritten,
    (None, reason) is dropped. Dosing anywhere drops the row; diagnoses are hedged when that is clean."""
    reasons = {i: check_assistant(m["content"]) for i, m in enumerate(conv) if m["role"] == "assistant"}
    if PERSONAL_DOSING in reasons.values():
        return None, PERSONAL_DOSING
    if DIAGNOSES_ASKER not in reasons.values():
        return conv, None
    out = [dict(m) for m in conv]
    for i, reason in reasons.items():
        if reason == DIAGNOSES_ASKER:
            new = rewrite_assistant(out[i]["content"])
            if new is None:
                return None, DIAGNOSES_ASKER
            out[i]["content"] = new
    return out, DIAGNOSES_ASKER
