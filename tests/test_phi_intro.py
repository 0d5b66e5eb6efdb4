"""Self-introductions in Spanish, French and German are name cues, like "my name is" and "I'm".

And the words they are made of, used otherwise ("soy alérgico", "ich heiße Sie willkommen", English "soy"),
are left alone.
"""

from __future__ import annotations

import pytest

from medtune.data.phi import scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola, me llamo Lucía Pérez y tengo migraña.", "Hola, me llamo [NAME] y tengo migraña."),
        ("Mi nombre es Juan, tengo 40 años.", "Mi nombre es [NAME], tengo 40 años."),
        ("Buenas tardes, soy Ana García y estoy embarazada.", "Buenas tardes, soy [NAME] y estoy embarazada."),
        ("Soy José Luis Martínez.", "Soy [NAME]."),
        ("Hola, soy Ana y tengo 34 años.", "Hola, soy [NAME] y tengo 34 años."),
        ("Hola, soy Ana, tengo tos desde hace una semana.", "Hola, soy [NAME], tengo tos desde hace una semana."),
        ("Bonjour, je m'appelle Marie Dubois et j'ai de la fièvre.",
         "Bonjour, je m'appelle [NAME] et j'ai de la fièvre."),
        ("Je m’appelle Élodie.", "Je m’appelle [NAME]."),
        ("Mon nom est Pierre, j'ai 52 ans.", "Mon nom est [NAME], j'ai 52 ans."),
        ("Hallo, ich heiße Anna Schmidt und habe Husten.", "Hallo, ich heiße [NAME] und habe Husten."),
        ("Ich heisse Jürgen.", "Ich heisse [NAME]."),
        ("Mein Name ist Jonas, ich bin 30.", "Mein Name ist [NAME], ich bin 30."),
    ],
)
def test_introductions_are_name_cues(text: str, expected: str) -> None:
    assert scrub(text) == (expected, {"name": 1})


@pytest.mark.parametrize(
    "text",
    [
        "Soy alérgico a la penicilina, ¿qué antibiótico puedo tomar?",
        "Soy diabético tipo 2 y me duele el pie.",
        "Soy Testigo de Jehová y no acepto transfusiones.",  # capitalised, but one word and no "tengo"
        "Soy Leo.",  # one capitalised word: not enough for "soy"
        "Is Soy Milk Formula okay for my baby?",  # English "soy": the text reads English
        "I switched to Soy Protein Isolate because of my kidneys.",
        "Ich heiße Sie herzlich willkommen in unserer Praxis.",
        "Das heiße ich nicht gut.",
        "J'appelle Marie demain pour le rendez-vous.",  # "j'appelle" (I call), not "je m'appelle"
        "Je m'appelle comme mon grand-père.",
        "Me llamo la atención por la fiebre.",
        "Im Winter habe ich Husten.",  # German words: the apostrophe-less "Im" cue is dropped
    ],
)
def test_ordinary_uses_are_not_names(text: str) -> None:
    assert scrub(text) == (text, {})


def test_language_hint_decides_soy_without_evidence() -> None:
    """A heading with no function word is a tie, which keeps a cue (a missed name is a leak); the caller's
    language settles it."""
    assert scrub("Soy Protein Isolate")[0] == "Soy [NAME]"
    assert scrub("Soy Protein Isolate", lang="en") == ("Soy Protein Isolate", {})
    assert scrub("Soy Ana García", lang="es")[0] == "Soy [NAME]"
    assert scrub("Is this right? soy Ana García", lang="en")[0] == "Is this right? soy Ana García"


@pytest.mark.parametrize("text", ["Soy Diabética y tengo 50 años, ¿puedo comer fruta?", "Soy Médico Residente en Lima.",
                                  "Ich heiße Dich herzlich willkommen.", "Wir heißen Euch willkommen."])
def test_capitalised_conditions_roles_and_informal_you_are_not_names(text: str):
    assert scrub(text)[0] == text


@pytest.mark.parametrize(("text", "scrubbed"), [
    ("Hola María, tengo fiebre desde ayer.", "Hola [NAME], tengo fiebre desde ayer."),
    ("Bonjour Marie, merci.", "Bonjour [NAME], merci."),
    ("Salut Paul!", "Salut [NAME]!"),
    ("Meine Frau Anna hat seit gestern Fieber.", "Meine Frau [NAME] hat seit gestern Fieber."),
    ("La Sra. Pérez toma metformina.", "La Sra. [NAME] toma metformina."),
    ("Frau Schmidt nimmt Ramipril.", "Frau [NAME] nimmt Ramipril."),
    ("Madame Dubois a 80 ans.", "Madame [NAME] a 80 ans."),
])
def test_spanish_french_german_greetings_and_honorifics_are_name_cues(text: str, scrubbed: str):
    assert scrub(text)[0] == scrubbed


@pytest.mark.parametrize("text", ["Bonjour Docteur, j'ai mal à la tête.", "Hallo Leute, ich habe Husten.",
                                  "Guten Tag Herr Doktor, mein Sohn hat Fieber.", "Meine Frau hat Fieber.",
                                  "Buenos días doctora, tengo tos.", "Señor, tengo dolor de pecho."])
def test_greeting_a_doctor_or_everyone_names_no_one(text: str):
    assert scrub(text)[0] == text
