"""Clear signals the guard trusts without the classifier, and the text normalisation both share.

Rules cover two things only. (1) Unambiguous first-person statements in English ("I want to kill
myself", "he isn't breathing"), so a long message cannot dilute them below a threshold. (2) Emergency
and self-harm phrases in Spanish, French and German: the packaged sentence encoder is English-only, so
for those languages a lexicon is the honest tool. Everything else is left to the learned classifier;
growing this file until a fixture passes is exactly what the guard must not become. A phrase belongs here
only if people use it across many situations ("kill myself", "ne respire plus"), never a sentence lifted
from a red-team prompt; tests/test_rules_signals.py runs every pattern over the fit-only prompts and fails
on any unexplained hit on another category.

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
    rf"{_I}[^.?!]{{0,30}}\b(?:kill|harm|hang|drown|shoot|starve|poison)(?:ing)? my ?self\b",
    # hurt / cut / burn with intent or habit, not an accident ("I cut myself shaving", "I fell and hurt myself")
    rf"{_I}[^.?!]{{0,20}}\b(?:want|wanna|going|gonna|plan(?:ning)?|keep|kept|been|started|urges?|thinking (?:of|about)"
    r"|think about|about|ready|have|need|urge) (?:to )?(?:hurt(?:ing)?|cut(?:ting)?|burn(?:ing)?) my ?self\b",
    r"\bi (?:still |often |sometimes )?burn my ?self\b",  # the habitual present; an accident reads "burned"
    rf"{_I}[^.?!]{{0,20}}\b(?:want|wanna|plan(?:ning)?|ready) to die\b",  # not "I'm going to die" (fear, hyperbole)
    rf"{_I}[^.?!]{{0,20}}\b(?:want|wanna|going|gonna|plan(?:ning)?|ready|about) to (?:end it|end my life)\b",
    rf"{_I}[^.?!]{{0,20}}\b(?:feel|feeling|am|been) (?:really |so |very )?suicidal\b",
    r"\b(?:kms|kys myself|unalive (?:my ?self|me))\b",
    r"\b(?:end|take|taking|ending) my (?:own )?life\b",
    r"\bmy (?:suicide|goodbye) (?:note|letter)s?\b",
    r"\bdon'?t want to (?:live|be alive|wake up) (?:anymore|any more)\b",
    r"\bbetter off (?:dead|without me)\b",
    # "to not wake up" / "to die in my sleep" as a wish or an amount, not "how to not wake up at 3am"
    r"\b(?:enough|how (?:much|many)|would it take|i'?d need|i need|pills?)\b[^.?!]{0,60}\bto (?:not|never) wake up\b",
    r"\b(?:want|wanna|wish|hope|hoping|pray) (?:\w+ ){0,2}to (?:not|never) wake up\b",
    r"\b(?:hope|wish|pray)(?: that)? i (?:won'?t|don'?t|never) wake up\b",
    r"\b(?:want|wanna|wish|use|take|enough|how (?:much|many))\b[^.?!]{0,40}\bto die in my sleep\b",
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
        r"\bacabar con (?:todo|mi vida)\b", r"\bhacerme dano\b",
        # cutting oneself, not a haircut or a kitchen accident ("me corte con la radial")
        r"\b(?:cortarme|me corto|me hago cortes)\b(?: \w+){0,2} (?:venas|munecas?|brazos?|piernas?|muslos?)\b",
        r"\b(?:cortarme|me corto) (?:mas |muy )?(?:profundo|hondo)\b", r"\bme corte (?:las venas|las? munecas?)\b",
        r"\bme quemo (?:\w+ ){0,3}con (?:el |un |los |unos )?(?:mechero|encendedor|cigarr\w*)",
        r"\bseria mejor (?:si )?(?:yo )?no (?:estuviera|existiera)\b", r"\bmejor sin mi\b",
        r"\b(?:tome|me tome) todas (?:mis|las) pastillas\b", r"\bno vale la pena (?:seguir )?vivir\b",
        r"\bme quiero (?:\w+ ){0,2}(?:matar|suicidar|morir)\b", r"\bme voy a (?:\w+ ){0,2}(?:matar|suicidar)\b",
        r"\b(?:quiero|quisiera|ganas de|deseo) morirme\b",  # not "me voy a morir" / "miedo a morirme" (fear)
        r"\bpara no (?:volver a )?despertar(?:me)?\b", r"\b(?:mortal|letal) para mi\b",
        r"\bcartas? de despedida\b", r"\bsin mi (?:estarian|estaran|estaria) mejor\b",
        r"\btirarme (?:de|desde|por) (?:un|una|el|la) (?:puente|edificio|ventana|balcon|azotea|acantilado)\b",
        r"\btirarme (?:a|al|bajo) (?:las vias|un tren|el tren|el metro|un coche)\b",
    ],
    "fr": [
        r"\b(?:je )?veux mourir\b", r"\benvie de mourir\b", r"\bme suicider\b", r"\bme tuer\b",
        r"\bmettre fin a (?:mes jours|ma vie)\b",
        r"\bme faire du mal\b", r"\b(?:me scarifier|je me scarifie|me mutiler|je me mutile)\b",
        # cutting oneself, not "me couper les cheveux"
        r"\b(?:me couper|je me coupe|me taillader|je me taillade)\b(?: \w+){0,2} (?:veines|poignets?|bras|cuisses?)\b",
        r"\bplus envie de vivre\b", r"\bmieux sans moi\b", r"\bme foutre en l'air\b", r"\bfatigue(?:e)? de vivre\b",
        r"\b(?:j'ai (?:avale|pris)|je viens d'(?:avaler|prendre)) (?:toute? (?:ma|mon|la|le) (?:boite|plaquette"
        r"|flacon|tube)|tou(?:te)?s (?:mes|les) (?:pilules|medicaments|cachets|comprimes))\b",
        # "en finir" about life, not "en finir avec l'acne"
        r"\ben finir\b(?![^.?!]{0,30}\bavec\b(?! (?:la vie|tout|moi|ma vie)))",
        r"\b(?:ne|pour) (?:ne )?(?:plus|pas) me reveiller\b", r"\bje me (?:suis )?(?:\w+ )?scarifi(?:e|ee|es|ees)\b",
        r"\blettres? d'adieu\b", r"\bme jeter (?:du|sous|d'un|par)\b",
    ],
    "de": [
        # the writer, not "er will sterben" (someone else, reported)
        r"\b(?:will(?<!\ber will)(?<!\bsie will)(?<!\bes will)(?<!\bman will)|mochte|moechte)"
        r" (?:nicht mehr leben|sterben)\b",
        r"\bmich umbringen\b", r"\bmir das leben nehmen\b", r"\bmir (?:etwas|was) antun\b",
        r"\b(?:ritze mich|mich ritzen)\b", r"\bselbstmord begehen\b", r"\bsuizid begehen\b",
        r"\bkeinen sinn mehr zu leben\b", r"\bbesser dran ohne mich\b", r"\balle (?:meine )?tabletten genommen\b",
        r"\b(?:ich|man|mich)\b(?: \w+){0,4} (?:nicht|nie) mehr aufwach",  # not "damit er nicht mehr aufwacht"
        r"\bmich (?:\w+ ){0,2}umbringen\b", r"\b(?:ich|bin) (?:\w+ ){0,3}lebensmude\b",  # not "bist du lebensmude?"
        r"\bich (?:denke|plane) (?:\w+ ){0,3}(?:suizid|selbstmord)",
        r"\bich (?:habe|hab) (?:oft |immer wieder |wieder |standig )?(?:suizid|selbstmord)gedanken\b",
        r"\bmich (?:selbst )?(?:verletzen|ritzen|schneiden)\b",
        r"\bich (?:will|mochte|wunschte) (?:\w+ ){0,2}fur immer weg\b",
        r"\babschiedsbrie", r"\bganze packung (?:\w+ ){0,6}(?:genommen|geschluckt)\b",
        r"\bvon (?:der|einer) brucke (?:springen|gesprungen)\b",
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
        r"\barrastrando las palabras\b", r"\bse me (?:esta )?cerrando la garganta\b", r"\bme (?:estoy )?ahogando\b",
        r"\bno (?:puede|puedo) respirar\b", r"\bsangr(?:a|ando) (?:muchisimo|sin parar|a chorros)\b",
        r"\b(?:tiene|le esta dando) (?:una )?convulsion(?:es)? (?:ahora|ahorita|desde hace)\b",
        r"\bse (?:ha )?desmayado y no\b",
    ],
    "fr": [
        r"\bne respire (?:plus|pas)\b", r"\b(?:ne |n')(?:reagit|repond) (?:plus|pas)\b"
        r"(?! (?:au|aux) (?:traitements?|medicaments?|antibiotiques?)\b| a mes (?:mails|messages|sms)\b)",
        r"\b(?:est(?<!\bqui est)|reste) inconsciente?\b",  # not "quelqu'un qui est inconscient" (what to do if)
        r"\b(?:il|elle|mon \w+|ma \w+) s'(?:etouffe|est effondree?)\b",
        r"\ben train de faire une crise (?:d'epilepsie|convulsive)\b",
        r"\bsaigne (?:enormement|abondamment|sans arret|a flots)\b", r"\bn'arrete pas de saigner\b",
        r"\ba avale (?:une pile|de la javel|des medicaments|tous)\b", r"\blevres (?:bleues|violettes)\b",
        r"\bgorge (?:gonfle|se ferme|enfle)\b", r"\bforte douleur (?:dans|a) la poitrine\b",
        r"\bvisage qui tombe\b", r"\bbouche de travers\b", r"\bn'arrive (?:plus|pas) a (?:parler|respirer)\b",
        r"\bne peut plus bouger\b", r"\bconvulse (?:depuis|encore|toujours)\b",
        # a household chemical or a whole bottle, not "a bu du lait"
        r"\ba(?<!\bqui a) (?:bu|avale) (?:\w+ ){0,2}(?:javel|white-spirit|white spirit|essence|petrole|lave-vaisselle"
        r"|detergent|antigel|soude|destop|debouchant|produit menager|produit pour)",
        r"\ba (?:bu|avale) tout (?:le|la) (?:flacon|bouteille|boite|plaquette)\b",
        r"\b(?:vient d'|a )(?:avaler|avale|prendre|pris) (?:toute? (?:sa|son|la|le) (?:boite|plaquette|flacon)"
        r"|tou(?:te)?s (?:ses|les) (?:medicaments|cachets|comprimes|pilules))\b",
    ],
    "de": [
        r"\batmet (?:nicht|nicht mehr|kaum|rochelnd)\b", r"\bbewusstlos\b", r"\breagiert nicht(?: mehr)?\b",
        r"\b(?:ist )?zusammengebrochen\b", r"\b(?:erstickt|droht zu ersticken)\b",
        r"\bkrampft\b(?<!wade krampft)(?<!bein krampft)(?<!fuss krampft)(?<!muskel krampft)(?<!magen krampft)"
        r"(?<!bauch krampft)(?<!darm krampft)",  # a seizure, not a cramp
        r"\bblutet (?:sehr )?stark\b", r"\bhort nicht auf zu bluten\b", r"\blauft blau an\b",
        r"\b(?:blaue lippen|lippen sind blau)\b", r"\bhals schwillt zu\b",
        r"\bstarke (?:brustschmerzen|schmerzen in der brust)\b",
        r"\b(?:hat|haben) (?:eine knopfzelle|batterie|rohrreiniger|tabletten) (?:verschluckt|geschluckt)\b",
        r"\b(?:notarzt|krankenwagen|112) (?:gerufen|kommt)\b",
        r"\bgesicht (?:hangt|hangend)\b", r"\bkann (?:\w+ ){0,4}nicht mehr (?:bewegen|heben)\b",
        r"\bsprache (?:\w+ ){0,3}verwaschen\b", r"\blallt\b",
        r"\b(?:kriegt|bekommt|kriege|bekomme) keine luft\b",
        r"\bschlimmsten kopfschmerzen (?:meines|ihres|seines|deines) lebens\b",  # the thunderclap phrase
        r"\bblut (?:\w+ ){0,3}(?:spritzt|hort nicht auf)\b", r"\bvom auto erfasst\b",
    ],
}


def _compile(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_GROUPS: list[tuple[str, str, list[str]]] = [
    ("self_harm", "en", _EN_SELF_HARM),
    ("emergency", "en", _EN_EMERGENCY),
    *[("self_harm", lang, p) for lang, p in _SELF_HARM_LEXICON.items()],
    *[("emergency", lang, p) for lang, p in _EMERGENCY_LEXICON.items()],
]
_RULES: list[tuple[str, str, re.Pattern[str]]] = [(cat, lang, _compile(p)) for cat, lang, p in _GROUPS]


def signals() -> list[tuple[str, str, str]]:
    """Every rule pattern on its own as (category, language, regex source), in the order `match` tries them:
    tests check each one against labelled prompts (tests/test_rules_signals.py)."""
    return [(cat, lang, p) for cat, lang, patterns in _GROUPS for p in patterns]


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
    r"\b(?:not|never|no way i'?m|wouldn'?t|don'?t) (?:\w+ ){0,2}(?:kill|hurt|harm|cutt?)(?:ing)? my ?self\b",
    r"\b(?:don'?t|do not|never) (?:really |even )?(?:want|wanna) to die\b", r"\bno (?:me )?quiero morir(?:me)?\b",
    r"\bso (?:that )?(?:he|she|they|it) won'?t wake up\b",  # a purpose (harm_others), not someone unresponsive now
    r"\bne veux pas mourir\b", r"\b(?:will|mochte) (?:\w+ )?nicht sterben\b",
    # somebody else's words quoted, or a word asked about ("my friend says 'kms'", "what does kms mean")
    r"\b(?:say|says|saying|said|mean|means|dice|dijo|dicho|decir|dit|disait|dire|sagt|sagte|gesagt|sagen)\b"
    r"[^'\"“”«»„]{0,25}(?:(?<!\w)'(?:[^']|'(?=\w)){1,80}'(?!\w)|\"[^\"]{1,80}\"|“[^”]{1,80}”|«[^»]{1,80}»"
    r"|„[^“”]{1,80}[“”])",
    r"\bwhat (?:does|do|is) ['\"]?\w+['\"]? (?:mean|stand for)\b", r"\bmeaning of ['\"]?\w+",
    # self-harm that stopped ("I stopped cutting", "j'ai arrete de me scarifier")
    r"\b(?:stopped|quit) (?:\w+ )?(?:cutting|hurting|harming|burning)(?: my ?self)?",
    r"\barretee? de me \w+", r"\b(?:dejado|deje) de (?:cortarme|hacerme dano|lastimarme|quemarme)\b",
]))


def mask(folded: str) -> str:
    """Folded text with the spans that are not signals (idioms, denials, quoted words) blanked out."""
    return _NOT_A_SIGNAL.sub(" ", folded)


def match(folded: str) -> tuple[str, str, str] | None:
    """(category, language, matched phrase) of the first clear signal in folded text, or None."""
    folded = mask(folded)
    for category, lang, pattern in _RULES:
        m = pattern.search(folded)
        if m:
            return category, lang, m.group(0)
    return None
