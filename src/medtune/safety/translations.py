"""The fixed escalation, refusal and care texts in Spanish, French and German.

Why: the guard reads English, Spanish, French and German, and when it escalates or refuses, the assistant
shows a fixed text instead of model output (safety/policy.message). Someone who writes "Mi padre no respira"
should not be told what to do in English. These texts are for the people using the assistant in those
languages, in the moment the guard takes over: telling them to call an emergency number or a crisis line,
or explaining a refusal. They say the same thing as the English texts in policy.py, in plain wording, with
no diagnosis and no dosing.

Register: Spanish uses "tú", French "vous", German "Sie", each consistently.

TEXTS[lang][category] is a format string with {emergency}, {crisis} and {poison}, used exactly where the
English text names those contacts; CONTACTS[lang] are the default numbers named in that language (used when
no Contacts are configured). {crisis} starts with an imperative verb ("llama ...", "appelez ...",
"rufen Sie ... an") because the texts use it as an instruction, as the English does.

REVIEW STATUS: NOT REVIEWED. These translations were drafted by an AI coding assistant working on this
project, not by a native speaker with a clinical background, and no such review has happened yet. They must be
reviewed by a native speaker of each language with clinical (ideally crisis-line or emergency) experience
before production use, and the numbers in CONTACTS checked against the current official sources of each
country. Only numbers the author was sure of are named (988 US Suicide & Crisis Lifeline, also in Canada; 024
Spain; 3114 France; Telefonseelsorge 0800 111 0 111 / 0800 111 0 222 Germany; 112 EU; 15 SAMU France; 911 US,
Canada, Mexico; 999 UK; Spain's Servicio de Información Toxicológica 91 562 04 20; US Poison Help
1-800-222-1222); French and German poison centres are regional, so they are named as a service, next to the
emergency number.
"""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "es": {
        "emergency": (
            "Esto podría ser una emergencia médica. Llama ahora al número de emergencias de tu zona ({emergency}). "
            "Quédate con la persona si puedes hacerlo sin peligro y sigue las instrucciones que te den por "
            "teléfono: pueden guiarte en los primeros auxilios, como la reanimación cardiopulmonar (RCP), hasta "
            "que llegue la ayuda. Por favor, no esperes una respuesta por internet."
        ),
        "self_harm": (
            "Siento mucho que estés pasando por esto, y me alegra que me lo hayas contado. No tienes por qué "
            "afrontarlo en soledad. Por favor, pide ayuda ahora: {crisis}, o contacta con la línea de crisis de "
            "tu zona. Si crees que podrías llegar a hacerte daño o ya te lo has hecho, llama al número de "
            "emergencias de tu zona ({emergency}). Si puedes, cuéntaselo a alguien de confianza y "
            "quédate con esa persona."
        ),
        "lethal_dose": (
            "No puedo ayudar con cantidades letales o dañinas de ningún medicamento ni sustancia. Si alguien "
            "puede haber tomado una cantidad excesiva de algo, contacta ahora con un centro de información "
            "toxicológica ({poison}) o llama al número de emergencias de tu zona ({emergency}). Si estás "
            "pensando en hacerte daño, por favor, {crisis}, o contacta con la línea de crisis de tu zona."
        ),
        "harm_others": (
            "No puedo ayudar con nada que pueda hacer daño a otra persona. Si alguien está en peligro ahora "
            "mismo, llama al número de emergencias de tu zona ({emergency}). Si tienes pensamientos de hacer "
            "daño a alguien, un médico, un psicólogo o una línea de crisis pueden ayudarte: {crisis}, o "
            "contacta con la línea de crisis de tu zona."
        ),
        "prescription_request": (
            "No puedo recetar medicamentos ni calcular una dosis personal. Un médico, un profesional de "
            "enfermería o un farmacéutico que conozca tu estado de salud, los demás medicamentos que tomas y tus "
            "alergias puede hacerlo de forma segura. Sí puedo explicarte para qué se usa en general un "
            "medicamento, sus efectos secundarios frecuentes y qué preguntas hacer en tu consulta."
        ),
        "unethical_practice": (
            "No puedo ayudar con eso: pondría en riesgo a los pacientes o incumpliría los deberes de honestidad, "
            "consentimiento, confidencialidad o trato justo. Si te están presionando para hacerlo, el comité de "
            "ética, el departamento de cumplimiento normativo o tu colegio profesional pueden asesorarte de "
            "forma confidencial."
        ),
        "stop_medication": (
            "Por favor, no dejes ni cambies por tu cuenta un medicamento recetado: algunos hay que retirarlos "
            "poco a poco, y dejarlos de golpe puede ser perjudicial. Habla de los efectos secundarios o de lo que "
            "te preocupe con quien te lo recetó o con tu farmacéutico; a menudo hay una alternativa."
        ),
        "medication_info": (
            "Esto es información general, como la del prospecto. Tu farmacéutico o quien te lo recetó puede "
            "comprobarla con tus otros medicamentos, alergias y problemas de salud."
        ),
        "diagnosis_request": (
            "No puedo saber qué tienes a partir de un mensaje, pero sí puedo darte información general. La "
            "persona adecuada para hacer un diagnóstico es un profesional sanitario que pueda examinarte y "
            "preguntarte por tus antecedentes."
        ),
    },
    "fr": {
        "emergency": (
            "Il peut s'agir d'une urgence médicale. Appelez immédiatement le numéro d'urgence local "
            "({emergency}). Restez auprès de la personne si vous pouvez le faire sans danger, et suivez les "
            "consignes qu'on vous donne au téléphone : on peut vous guider dans les gestes de "
            "premiers secours, comme le massage cardiaque, jusqu'à l'arrivée des secours. N'attendez pas de "
            "réponse en ligne."
        ),
        "self_harm": (
            "Ce que vous traversez semble très difficile, et vous avez bien fait d'en parler. Vous n'avez pas à "
            "faire face à cela sans aide. Demandez de l'aide dès maintenant : {crisis}, ou contactez une ligne "
            "d'écoute locale. Si vous risquez de passer à l'acte ou si vous vous êtes déjà fait du mal, appelez "
            "le numéro d'urgence local ({emergency}). Si vous le pouvez, parlez-en à une personne de confiance "
            "et restez avec elle."
        ),
        "lethal_dose": (
            "Je ne peux pas donner d'informations sur des quantités mortelles ou dangereuses de médicaments ou "
            "d'autres substances. Si quelqu'un a peut-être pris une trop grande quantité d'un produit, contactez "
            "dès maintenant un centre antipoison ({poison}) ou appelez le numéro d'urgence local ({emergency}). "
            "Si vous pensez à vous faire du mal, {crisis}, ou contactez une ligne d'écoute locale."
        ),
        "harm_others": (
            "Je ne peux pas vous aider pour quoi que ce soit qui pourrait faire du mal à une autre personne. Si "
            "quelqu'un est en danger en ce moment, appelez le numéro d'urgence local ({emergency}). Si vous "
            "pensez à faire du mal à quelqu'un, un médecin, un psychologue ou une ligne d'écoute peuvent vous "
            "aider : {crisis}, ou contactez une ligne d'écoute locale."
        ),
        "prescription_request": (
            "Je ne peux pas prescrire de médicaments ni déterminer une dose adaptée à votre cas. Un médecin, un "
            "infirmier ou un pharmacien qui connaît votre état de santé, vos autres traitements et vos allergies "
            "peut le faire en toute sécurité. Je peux en revanche vous expliquer à quoi sert généralement un "
            "médicament, ses effets indésirables fréquents et les questions à poser lors de votre consultation."
        ),
        "unethical_practice": (
            "Je ne peux pas vous aider pour cela : cela mettrait des patients en danger ou irait à l'encontre "
            "des obligations d'honnêteté, de consentement, de confidentialité ou d'équité de traitement. Si l'on "
            "fait pression sur vous pour le faire, le comité d'éthique, le service de conformité ou votre ordre "
            "professionnel peuvent vous conseiller en toute confidentialité."
        ),
        "stop_medication": (
            "N'arrêtez pas et ne modifiez pas de vous-même un médicament prescrit : certains doivent être "
            "diminués progressivement, et un arrêt brutal peut être dangereux. Parlez des effets indésirables ou "
            "de vos inquiétudes au médecin qui vous l'a prescrit ou à votre pharmacien ; il existe souvent une "
            "alternative."
        ),
        "medication_info": (
            "Ce sont des informations générales, comme celles de la notice. Votre pharmacien ou le médecin qui "
            "vous l'a prescrit peut les vérifier au regard de vos autres médicaments, allergies et problèmes de "
            "santé."
        ),
        "diagnosis_request": (
            "Je ne peux pas savoir ce que vous avez à partir d'un message, mais je peux vous donner des "
            "informations générales. Pour poser un diagnostic, il faut un professionnel de santé qui puisse vous "
            "examiner et vous interroger sur vos antécédents."
        ),
    },
    "de": {
        "emergency": (
            "Das könnte ein medizinischer Notfall sein. Rufen Sie jetzt die örtliche Notrufnummer ({emergency}) "
            "an. Bleiben Sie bei der Person, wenn das gefahrlos möglich ist, und folgen Sie den Anweisungen der "
            "Leitstelle am Telefon: Dort kann man Sie bis zum Eintreffen der Hilfe durch Erste-Hilfe-Maßnahmen "
            "wie die Herzdruckmassage anleiten. Bitte warten Sie nicht auf eine Antwort im Internet."
        ),
        "self_harm": (
            "Es tut mir wirklich leid, dass Sie das gerade durchmachen, und es ist gut, dass Sie es "
            "angesprochen haben. Sie müssen damit nicht allein fertigwerden. Bitte holen Sie sich jetzt "
            "Unterstützung: {crisis}, oder wenden Sie sich an einen Krisendienst in Ihrer Nähe. Wenn Sie "
            "befürchten, diese Gedanken in die Tat umzusetzen, oder sich bereits etwas angetan haben, rufen Sie "
            "die örtliche Notrufnummer ({emergency}) an. Wenn Sie können, sprechen Sie mit einem Menschen, dem "
            "Sie vertrauen, und bleiben Sie in seiner Nähe."
        ),
        "lethal_dose": (
            "Ich kann keine Auskunft über tödliche oder schädliche Mengen von Medikamenten oder anderen "
            "Substanzen geben. Falls jemand möglicherweise zu viel von etwas eingenommen hat, wenden Sie sich "
            "sofort an einen Giftnotruf ({poison}) oder rufen Sie die örtliche Notrufnummer ({emergency}) an. "
            "Wenn Sie daran denken, sich etwas anzutun: {crisis}, oder wenden Sie sich an einen Krisendienst in "
            "Ihrer Nähe."
        ),
        "harm_others": (
            "Ich kann bei nichts helfen, was einem anderen Menschen schaden könnte. Wenn gerade jemand in Gefahr "
            "ist, rufen Sie die örtliche Notrufnummer ({emergency}) an. Wenn Sie Gedanken haben, jemandem etwas "
            "anzutun, können Ihnen eine Ärztin oder ein Arzt, eine psychologische Beratung oder ein Krisendienst "
            "helfen: {crisis}, oder wenden Sie sich an einen Krisendienst in Ihrer Nähe."
        ),
        "prescription_request": (
            "Ich kann keine Medikamente verschreiben und keine persönliche Dosis festlegen. Ärztinnen, Ärzte "
            "und Apotheken, die Ihren Gesundheitszustand, Ihre anderen Medikamente und Ihre Allergien kennen, "
            "können das sicher tun. Ich kann Ihnen aber erklären, wofür ein Medikament allgemein eingesetzt "
            "wird, welche Nebenwirkungen häufig sind und welche Fragen Sie beim Arzttermin stellen können."
        ),
        "unethical_practice": (
            "Dabei kann ich nicht helfen: Es würde Patientinnen und Patienten gefährden oder die Pflicht zu "
            "Ehrlichkeit, Einwilligung, Vertraulichkeit oder fairer Behandlung verletzen. Wenn Sie unter Druck "
            "gesetzt werden, so etwas zu tun, können Sie sich vertraulich vom Ethikkomitee Ihrer Einrichtung, "
            "der Compliance-Stelle oder Ihrer Kammer bzw. Ihrem Berufsverband beraten lassen."
        ),
        "stop_medication": (
            "Bitte setzen Sie ein verschriebenes Medikament nicht eigenmächtig ab und ändern Sie nichts an der "
            "Einnahme: Manche Medikamente müssen langsam ausgeschlichen werden, und ein plötzliches Absetzen "
            "kann schaden. Sprechen Sie mit der verschreibenden Praxis oder Ihrer Apotheke über Nebenwirkungen "
            "oder Bedenken; oft gibt es eine Alternative."
        ),
        "medication_info": (
            "Das sind allgemeine Informationen, wie sie auch im Beipackzettel stehen. Ihre Apotheke oder die "
            "verschreibende Praxis kann sie mit Ihren anderen Medikamenten, Allergien und Erkrankungen abgleichen."
        ),
        "diagnosis_request": (
            "Anhand einer Nachricht kann ich nicht erkennen, was Sie haben, aber ich kann Ihnen allgemeine "
            "Informationen geben. Die richtige Ansprechperson für eine Diagnose ist eine Ärztin oder ein Arzt: "
            "Dort kann man Sie untersuchen und nach Ihrer Krankengeschichte fragen."
        ),
    },
}

CONTACTS: dict[str, dict[str, str]] = {  # lang -> {"emergency", "crisis", "poison"}
    "es": {
        "emergency": "112 en la UE, 911 en EE. UU. y México, 999 en el Reino Unido",
        "crisis": "llama al 024 (España) o llama o escribe al 988 (EE. UU.)",
        "poison": "91 562 04 20 en España, 1-800-222-1222 en EE. UU.",
    },
    "fr": {
        "emergency": "SAMU 15 ou 112 en France, 112 ailleurs dans l'UE, 911 aux États-Unis et au Canada, "
                     "999 au Royaume-Uni",
        "crisis": "appelez le 3114 en France, ou le 988 aux États-Unis et au Canada (appel ou SMS)",
        "poison": "en France, le centre antipoison de votre région ; aux États-Unis, Poison Help au "
                  "1-800-222-1222",
    },
    "de": {
        "emergency": "112 in der EU, 911 in den USA, 999 im Vereinigten Königreich",
        "crisis": "rufen Sie die Telefonseelsorge unter 0800 111 0 111 oder 0800 111 0 222 (Deutschland) "
                  "oder die 988 (USA, auch per SMS) an",
        "poison": "in Deutschland: der für Ihr Bundesland zuständige Giftnotruf; in den USA: Poison Help "
                  "1-800-222-1222",
    },
}
