"""Lexical features and language identification for the guard, next to the sentence embeddings.

Embeddings carry meaning ("I won't be a burden much longer"); character n-grams carry the surface cues
embeddings blur ("not breathing" vs "stop breathing exercises", typos such as "overdoes"). The n-grams
are hashed (scikit-learn's HashingVectorizer), so nothing but the classifier's weights is shipped.
The language guess is a stop-word count: enough to know when the English encoder should not be
trusted to escalate (Spanish, French and German go through the rule lexicons instead).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

N_HASH = 2**18

_STOPWORDS = {
    "en": "the and is are was i my you what how to of in it that for with not do does can this".split(),
    "es": "el la los las que de y es en un una por para con mi no se lo como esta estoy qué cómo".split(),
    "fr": "le la les des et est un une que qui pour dans pas je mon ma ne se sur avec il elle quoi".split(),
    "de": "der die das und ist nicht ich mein meine ein eine mit zu auf für was wie es sie er hat".split(),
}
_WORD = re.compile(r"[a-zà-ÿß]+")


def language(text: str) -> str:
    """"en", "es", "fr" or "de" by stop-word counts (English on a tie or with too little text)."""
    words = _WORD.findall(text.lower())
    counts = {lang: sum(w in set(sw) for w in words) for lang, sw in _STOPWORDS.items()}
    best = max(counts, key=counts.__getitem__)
    return best if best != "en" and counts[best] >= 2 and counts[best] > counts["en"] else "en"


@cache
def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=N_HASH, alternate_sign=False,
                             norm="l2", lowercase=True)


def ngrams(texts: list[str]) -> Any:
    """Sparse (texts, N_HASH) matrix of l2-normalised character 3-5-gram counts."""
    return _vectorizer().transform(texts)
