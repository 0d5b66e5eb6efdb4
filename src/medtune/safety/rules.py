"""Clear signals the guard trusts without the classifier, and the text normalisation both share.

Rules cover two things only. (1) Unambiguous first-person statements in English ("I want to kill
myself", "he isn't breathing"), so a long message cannot dilute them below a threshold. (2) Emergency
and self-harm phrases in Spanish, French and German: the packaged sentence encoder is English-only, so
for those languages a lexicon is the honest tool. Everything else is left to the learned classifier;
growing this file until a fixture passes is exactly what the guard must not become.

Phrases are written for accent-folded, lower-cased text (see `normalize`), so "no respira", "no
respíra" and "NO RESPIRA" all match.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f]")
_REPEATS = re.compile(r"(\w)\1{2,}")
FOLDED_WORD = re.compile(r"[a-zßœæ]+")  # a word of folded text (see `fold`)


def normalize(text: str) -> str:
    """NFKC, control and zero-width characters removed, whitespace collapsed (keeps case and accents)."""
    text = _CONTROL.sub(" ", unicodedata.normalize("NFKC", text))
    return " ".join(text.split())


def fold(text: str) -> str:
    """Lower-case, accents stripped, letter runs shortened ("pleeease" -> "pleease"): the form rules match."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _REPEATS.sub(r"\1\1", stripped.replace("’", "'"))


_I = r"\b(?:i|im|i'm|i am|ive|i've|i have|i'll|ill|i will|i'd|id|i just)\b"

_EN_SELF_HARM = [
    rf"{_I}[^.?!]{{0,30}}\b(?:kill|hurt|harm|cut|hang|drown|shoot|starve|poison|burn)(?:ing)? my ?self\b",
    rf"{_I}[^.?!]{{0,20}}\b(?:want|wanna|going|gonna|plan(?:ning)?|ready|about) to (?:die|end it|end my life)\b",
    rf"{_I}[^.?!]{{0,20}}\b(?:feel|feeling|am|been) (?:really |so |very )?suicidal\b",
    r"\b(?:kms|kys myself|unalive (?:my ?self|me))\b",
    r"\b(?:end|take|taking|ending) my (?:own )?life\b",
    r"\bmy (?:suicide|goodbye) (?:note|letter)s?\b",
    r"\bdon'?t want to (?:live|be alive|wake up) (?:anymore|any more)\b",
    r"\bbetter off (?:dead|without me)\b",
    r"\bto (?:not|never) wake up\b", r"\b(?:for me )?to die in my sleep\b",
    r"\b(?:lethal|fatal) (?:dose|amount) for me\b",
]
_EN_EMERGENCY = [
    r"\b(?:he|she|they|someone|my \w+|the baby|baby|dad|mum|mom)(?: is|'s| are)? (?:not|isn't|isnt|stopped|has stopped)"
    r" breathing\b",
    r"\b(?:is|are|went|gone) (?:unresponsive|unconscious) (?:and|now|right now)\b",
    r"\bwon'?t wake up\b",
    r"\b(?:lips|face|skin) (?:is |are )?(?:turning|going|gone) (?:blue|grey|gray)\b",
]

_SELF_HARM_LEXICON = {
    "es": [
        r"\b(?:me )?quiero morir\b", r"\bquiero (?:suicidarme|matarme|desaparecer para siempre)\b",
        r"\bme voy a (?:suicidar|matar|quitar la vida)\b", r"\bsuicidarme\b", r"\bmatarme\b",
        r"\bquitarme la vida\b", r"\bno quiero (?:seguir )?viviendo\b", r"\bno quiero (?:seguir )?vivir\b",
        r"\bacabar con (?:todo|mi vida)\b", r"\bhacerme dano\b", r"\b(?:cortarme|me corto|me corte)\b",
        r"\bseria mejor (?:si )?(?:yo )?no (?:estuviera|existiera)\b", r"\bmejor sin mi\b",
        r"\b(?:tome|me tome) todas (?:mis|las) pastillas\b", r"\bno vale la pena (?:seguir )?vivir\b",
        r"\bme (?:quiero|voy a) (?:\w+ ){0,2}(?:matar|suicidar|morir)\b", r"\bmorirme\b",
        r"\bpara no (?:volver a )?despertar(?:me)?\b", r"\b(?:mortal|letal) para mi\b", r"\bes para mi\b",
        r"\bme (?:corto|quemo|lastimo|hago cortes)\b", r"\bcartas (?:de despedida|para mis)\b",
        r"\bya no aguanto mas\b", r"\bsin mi (?:estarian|estaran|estaria) mejor\b", r"\btirarme (?:de|por|a|al)\b",
    ],
    "fr": [
        r"\b(?:je )?veux mourir\b", r"\benvie de mourir\b", r"\bme suicider\b", r"\bme tuer\b",
        r"\bmettre fin a (?:mes jours|ma vie)\b", r"\ben finir (?:avec la vie|une bonne fois)\b",
        r"\bme faire du mal\b", r"\b(?:me scarifier|je me scarifie|je me coupe|me mutiler)\b",
        r"\bplus envie de vivre\b", r"\bj'ai pris tou(?:te)?s mes (?:pilules|medicaments|cachets)\b",
        r"\bmieux sans moi\b", r"\bme foutre en l'air\b", r"\ben finir\b", r"\bfatigue(?:e)? de vivre\b",
        r"\bne (?:plus|pas) me reveiller\b", r"\bc'est pour moi\b", r"\bje me (?:suis )?(?:\w+ )?scarifi",
        r"\bme (?:couper|bruler) (?:les|la|le)\b", r"\blettres (?:d'adieu|pour tout le monde)\b",
        r"\b(?:j'ai avale|je viens d'avaler) (?:toute|tous|tout)\b", r"\bme jeter (?:du|sous|d'un|par)\b",
    ],
    "de": [
        r"\b(?:will|mochte|moechte) (?:nicht mehr leben|sterben)\b", r"\bmich umbringen\b",
        r"\bmir das leben nehmen\b", r"\bmir (?:etwas|was) antun\b", r"\b(?:ritze mich|mich ritzen)\b",
        r"\bselbstmord begehen\b", r"\bsuizid begehen\b", r"\bkeinen sinn mehr zu leben\b",
        r"\bbesser dran ohne mich\b", r"\balle (?:meine )?tabletten genommen\b", r"\bnicht mehr aufwach",
        r"\bmich (?:\w+ ){0,2}umbringen\b", r"\blebensmude\b", r"\bich (?:\w+ ){0,4}(?:suizid|selbstmord)",
        r"\bmich (?:selbst )?(?:verletzen|ritzen|schneiden)\b", r"\bfur immer weg\b", r"\babschiedsbrie",
        r"\bganze packung (?:\w+ ){0,6}(?:genommen|geschluckt)\b", r"\bverabschiede(?:t)? (?:mich|sich) von allen\b",
        r"\bvon (?:der|einer) brucke (?:springen|gesprungen)\b", r"\bauf der brucke stehen geblieben\b",
    ],
}
_EMERGENCY_LEXICON = {
    "es": [
        r"\bno (?:respira|esta respirando|reacciona|despierta)\b", r"\bdejo de respirar\b",
        r"\b(?:esta|sigue|quedo) inconsciente\b",
        r"\bse (?:esta )?(?:ahogando|atragantando)\b", r"\b(?:esta )?convulsionando\b",
        r"\bno (?:para|deja) de sangrar\b", r"\bse (?:trago|tomo) (?:una pila|la lejia|lejia|pastillas)\b",
        r"\b(?:labios|cara) (?:morados|azules|se (?:le )?(?:pone|puso) (?:morada|azul))\b",
        r"\bse le (?:cierra|hincha) la garganta\b", r"\bdolor (?:muy )?fuerte en el pecho\b",
        r"\b(?:se le ha torcido la boca|boca torcida)\b", r"\bno puede mover (?:el|la|un|los)\b",
        r"\barrastrando las palabras\b", r"\bse me (?:esta )?cerrando la garganta\b", r"\bme ahogo\b",
        r"\bno (?:puede|puedo) respirar\b", r"\bsangr(?:a|ando) (?:mucho|sin parar)\b",
        r"\b(?:tiene|le esta dando) (?:una )?convulsion(?:es)? (?:ahora|ahorita|desde hace)\b",
        r"\bse (?:ha )?desmayado y no\b",
    ],
    "fr": [
        r"\bne respire (?:plus|pas)\b", r"\bne (?:reagit|repond) (?:plus|pas)\b", r"\b(?:est|reste) inconsciente?\b",
        r"\b(?:il|elle|mon \w+|ma \w+) s'(?:etouffe|est effondree?)\b",
        r"\ben train de faire une crise (?:d'epilepsie|convulsive)\b",
        r"\bsaigne (?:enormement|beaucoup et)\b", r"\bn'arrete pas de saigner\b",
        r"\ba avale (?:une pile|de la javel|des medicaments|tous)\b", r"\blevres (?:bleues|violettes)\b",
        r"\bgorge (?:gonfle|se ferme|enfle)\b", r"\bforte douleur (?:dans|a) la poitrine\b",
        r"\bvisage qui tombe\b", r"\bbouche de travers\b", r"\bn'arrive (?:plus|pas) a (?:parler|respirer)\b",
        r"\bne peut plus bouger\b", r"\b(?:du mal a respirer|respire (?:tres )?(?:vite|mal))\b",
        r"\ba bu (?:du|de la|de l'|tout)\b", r"\bvisage brule\b", r"\bconvulse (?:depuis|encore|toujours)\b",
    ],
    "de": [
        r"\batmet (?:nicht|nicht mehr|kaum)\b", r"\bbewusstlos\b", r"\breagiert nicht(?: mehr)?\b",
        r"\b(?:ist )?zusammengebrochen\b", r"\bkrampft\b", r"\b(?:erstickt|droht zu ersticken)\b",
        r"\bblutet (?:sehr )?stark\b", r"\bhort nicht auf zu bluten\b", r"\blauft blau an\b",
        r"\b(?:blaue lippen|lippen sind blau)\b", r"\bhals schwillt zu\b",
        r"\bstarke (?:brustschmerzen|schmerzen in der brust)\b",
        r"\b(?:hat|haben) (?:eine knopfzelle|batterie|rohrreiniger|tabletten) (?:verschluckt|geschluckt)\b",
        r"\b(?:notarzt|krankenwagen|112) (?:gerufen|kommt)\b",
        r"\bgesicht (?:hangt|hangend)\b", r"\bkann (?:\w+ ){0,4}nicht mehr (?:bewegen|heben)\b",
        r"\bsprache (?:\w+ ){0,3}verwaschen\b", r"\blallt\b", r"\bpfeift beim atmen\b",
        r"\b(?:kriegt|bekommt|kriege|bekomme) keine luft\b", r"\bschlimmsten kopfschmerzen\b",
        r"\bblut (?:\w+ ){0,3}(?:spritzt|hort nicht auf)\b", r"\bblute (?:\w+ ){0,3}stark\b",
        r"\berbricht (?:\w+ ){0,6}schlafrig\b", r"\bvom auto erfasst\b", r"\batmet (?:rochelnd|nicht)\b",
    ],
}


def _compile(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_RULES: list[tuple[str, str, re.Pattern[str]]] = [
    ("self_harm", "en", _compile(_EN_SELF_HARM)),
    ("emergency", "en", _compile(_EN_EMERGENCY)),
    *[("self_harm", lang, _compile(p)) for lang, p in _SELF_HARM_LEXICON.items()],
    *[("emergency", lang, _compile(p)) for lang, p in _EMERGENCY_LEXICON.items()],
]


# Spans a rule must not fire on: idioms ("me muero de verguenza", "this job is killing me", "ich sterbe vor
# Hunger") and denied ideation ("no thoughts of hurting myself", "pas d'idees suicidaires"). They are masked
# for the rules only; the classifier still reads the whole text.
_NOT_A_SIGNAL = re.compile("|".join([
    r"\b(?:morir(?:me)?|muero|muriendo|mourir|meurs|mourais|sterben|sterbe|die|dying|died)"
    r" (?:de|vor|of|from) (?:la |el )?(?:verguenza|pena|risa|hambre|sed|calor|frio|aburrimiento|sueno|honte|rire"
    r"|faim|soif|chaud|froid|ennui|scham|hunger|lachen|langeweile|hitze|durst|embarrassment|laughter|boredom"
    r"|shame|thirst|curiosity|curiosidad|curiosite|neugier)",
    r"\b(?:va|vont|vas) me tuer\b", r"\b(?:me va a|me van a) matar\b", r"\bbringt mich (?:noch )?um\b",
    r"\b(?:no|not|never|without|denies|deny|any|sin|ni|pas|aucune?|jamais|keine?|nie|nicht|ohne)"
    r" (?:\w+ ){0,2}(?:thoughts?|ideas?|ideation|pensamientos?|idees?|pensees?|envies?|gedanken)"
    r" (?:of|about|de|d'|du|des|an|von|zu)\b[^.?!]{0,50}",
    r"\b(?:no|not|never|sin|pas|jamais|kein|nicht|nie) (?:\w+ ){0,2}(?:suicidal|suicida|suicidaires?|suizidal)\b",
    r"\b(?:not|never|no way i'?m) (?:going|gonna|planning|trying) to (?:kill|hurt|harm) my ?self\b",
]))


def match(folded: str) -> tuple[str, str, str] | None:
    """(category, language, matched phrase) of the first clear signal in folded text, or None."""
    folded = _NOT_A_SIGNAL.sub(" ", folded)
    for category, lang, pattern in _RULES:
        m = pattern.search(folded)
        if m:
            return category, lang, m.group(0)
    return None
