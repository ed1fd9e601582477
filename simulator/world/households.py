"""Households and what their speakers say: the simulated world outside the backend.

A :class:`World` is built from one seed. Each household gets its own seed derived from the
world seed and the household's key, so adding a household never changes another one.
From that seed a Faker instance (in the household's locale) draws the account holder, the
members, the postal address; a ``random.Random`` draws devices, contacts, habits and
voices. Nothing reads the global ``random`` module or the wall clock: the simulated clock
starts at :attr:`World.start`, itself a function of the seed.

Utterances sound like real assistant use and carry the detail that made the 2018 victim
identifiable: the weather in the household's town, calls and messages to named contacts,
the doctor's name, the street for a taxi, shopping lists, reminders, music, timers and
smart-home commands, in the household's language.

::

    world = World.build(2018, "de_DE",
                        households=[HouseholdSpec("stranger", members=2, recordings=1700)],
                        background=8)
    for utt in world.traffic(days=60):
        pcm = utt.pcm()
"""

from __future__ import annotations

import hashlib
import math
import random
import string
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import accumulate

from faker import Faker

from simulator.world.audio import Voice, VoiceEngine, VoiceKind, VoiceProfile, make_voice

LOCALES = ("de_DE", "fr_FR", "en_US", "en_GB")
"""Locales with phrase tables (Faker names, assistant phrases in that language)."""

DEVICE_MODELS: dict[str, str] = {
    "Echo Dot (3rd Gen)": "G090LF",
    "Echo Dot (4th Gen)": "G091GL",
    "Echo (2nd Gen)": "G090LJ",
    "Echo (4th Gen)": "G6G0WH",
    "Echo Plus (2nd Gen)": "G2A0RF",
    "Echo Show 5": "G0V1XN",
    "Echo Show 8": "G0X1AC",
    "Echo Studio": "G9V1RX",
    "Echo Spot": "G0A2PH",
}
"""Model name → serial prefix; a serial is the prefix and ten digits (16 characters)."""

ROOMS = ("kitchen", "living room", "bedroom", "office", "bathroom", "kids room", "hallway",
         "dining room")
_ROOM_WEIGHTS = (3.0, 3.0, 1.6, 1.0, 0.6, 0.6, 0.4, 0.5)

_EPOCH = datetime(2018, 1, 1, tzinfo=UTC)

# Relative use of the assistant per local hour: morning and evening peaks, quiet nights.
_HOURS = (0.2, 0.1, 0.05, 0.05, 0.05, 0.2, 1.0, 2.2, 2.0, 1.2, 1.0, 1.1,
          1.4, 1.1, 0.9, 1.0, 1.3, 1.8, 2.4, 2.3, 2.0, 1.6, 1.0, 0.5)

_INTENTS = ("weather", "call", "message", "shopping", "reminder", "music", "timer",
            "smarthome", "other")
_INTENT_WEIGHTS = (1.6, 0.8, 0.7, 1.2, 0.9, 1.6, 1.0, 1.4, 0.8)


@dataclass(frozen=True)
class Phrasebook:
    """Everything said in one locale: templates per intent and the words that fill them."""

    tag: str
    """BCP 47 tag sent on the wire (``de-DE``)."""
    utc_offset: int
    """Hours from UTC of the local clock (standard time; enough for a daily rhythm)."""
    towns: tuple[str, ...]
    relations: tuple[str, ...]
    in_room: dict[str, str]
    weekdays: tuple[str, ...]
    whens: tuple[str, ...]
    items: tuple[str, ...]
    artists: tuple[str, ...]
    genres: tuple[str, ...]
    tasks: tuple[str, ...]
    messages: tuple[str, ...]
    foods: tuple[str, ...]
    temps: tuple[int, int]
    templates: dict[str, tuple[str, ...]]
    address: str
    """Postal address layout with ``{street}``, ``{postcode}``, ``{town}``, ``{region}``."""

    def clock(self, hour: int, minute: int) -> str:
        """A time of day the way people say it in this locale."""
        if self.tag == "de-DE":
            return f"{hour} Uhr {minute}" if minute else f"{hour} Uhr"
        if self.tag == "fr-FR":
            return f"{hour} h {minute:02d}" if minute else f"{hour} h"
        if self.tag == "en-US":
            h12 = hour % 12 or 12
            return f"{h12}:{minute:02d} {'am' if hour < 12 else 'pm'}"
        return f"{hour}:{minute:02d}"


_DE = Phrasebook(
    tag="de-DE", utc_offset=1,
    towns=("Augsburg", "Bamberg", "Bielefeld", "Bochum", "Bonn", "Braunschweig", "Bremen",
           "Chemnitz", "Darmstadt", "Dresden", "Erfurt", "Freiburg im Breisgau", "Göttingen",
           "Hamburg", "Hannover", "Heidelberg", "Karlsruhe", "Kassel", "Kiel", "Köln",
           "Leipzig", "Lübeck", "Mainz", "Mannheim", "München", "Münster", "Nürnberg",
           "Oldenburg", "Osnabrück", "Potsdam", "Regensburg", "Rostock", "Saarbrücken",
           "Stuttgart", "Ulm", "Würzburg", "Bad Kissingen", "Wuppertal"),
    relations=("Mama", "Papa", "Oma", "Opa", "Tante Gabi", "Onkel Peter"),
    in_room={"kitchen": "in der Küche", "living room": "im Wohnzimmer",
             "bedroom": "im Schlafzimmer", "bathroom": "im Bad", "office": "im Arbeitszimmer",
             "kids room": "im Kinderzimmer", "hallway": "im Flur",
             "dining room": "im Esszimmer"},
    weekdays=("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    whens=("morgen früh", "heute Abend", "morgen um {clock}", "am {weekday}", "in einer Stunde",
           "um {clock}"),
    items=("Milch", "Hafermilch", "Brot", "Eier", "Butter", "Käse", "Tomaten", "Kartoffeln",
           "Äpfel", "Bananen", "Kaffee", "Toilettenpapier", "Spülmittel", "Nudeln", "Reis",
           "Joghurt", "Zwiebeln", "Waschmittel", "Katzenfutter", "Windeln", "Mineralwasser",
           "Müsli", "Lachs", "Hackfleisch", "Brezeln"),
    artists=("Helene Fischer", "Herbert Grönemeyer", "Die Toten Hosen", "Rammstein",
             "Mark Forster", "Sarah Connor", "AnnenMayKantereit", "Peter Fox", "Nena",
             "Udo Lindenberg", "Cro", "Clueso", "Andrea Berg", "Kraftwerk", "Ed Sheeran",
             "Adele", "Coldplay", "ABBA"),
    genres=("Jazz", "Rock", "klassische Musik", "Schlager", "Hip-Hop", "Entspannungsmusik"),
    tasks=("den Müll", "die Tabletten", "den Elternabend", "das Paket", "die Wäsche",
           "den Geburtstag von {contact}", "den Termin bei Doktor {doctor}",
           "die Steuererklärung", "das Training", "den Anruf bei {contact}"),
    messages=("ich bin in zehn Minuten da", "ich komme später", "kannst du Brot mitbringen",
              "das Essen ist fertig", "ich hab dich lieb", "wir sind gut angekommen",
              "ruf mich bitte zurück", "bin schon unterwegs"),
    foods=("die Nudeln", "die Eier", "den Kuchen", "die Pizza", "den Reis"),
    temps=(18, 24),
    templates={
        "weather": ("Wie wird das Wetter morgen in {town}?", "Wie ist das Wetter in {town}?",
                    "Regnet es heute in {town}?", "Wie warm wird es am {weekday} in {town}?",
                    "Brauche ich heute einen Regenschirm in {town}?"),
        "call": ("Ruf {contact} an.", "{contact} anrufen.", "Ruf {contact} auf dem Handy an."),
        "message": ("Schick {contact} eine Nachricht: {message}.", "Sag {contact}, {message}."),
        "shopping": ("Setz {item} auf die Einkaufsliste.", "Füge {item} zur Einkaufsliste hinzu.",
                     "Was steht auf meiner Einkaufsliste?", "Schreib {item} auf die Einkaufsliste."),
        "reminder": ("Erinnere mich {when} an {task}.", "Erinnere mich {when} an {task}.",
                     "Wann ist mein Termin bei Doktor {doctor}?"),
        "music": ("Spiel {artist}.", "Spiel {genre} {in_room}.",
                  "Spiel das neue Album von {artist}.", "Lauter.", "Nächster Titel.", "Pause."),
        "timer": ("Stell einen Timer auf {minutes} Minuten.",
                  "Timer für {food}, {minutes} Minuten.", "Wie lange läuft der Timer noch?",
                  "Weck mich morgen um {clock}."),
        "smarthome": ("Mach das Licht {in_room} an.", "Schalte das Licht {in_room} aus.",
                      "Stell die Heizung {in_room} auf {temp} Grad.",
                      "Dimme das Licht {in_room} auf {pct} Prozent."),
        "other": ("Bestell mir ein Taxi zur Adresse {street}.",
                  "Wann fährt der nächste Zug nach {town2}?", "Wie spät ist es?",
                  "Wann hat {contact} Geburtstag?", "Was gibt es Neues?"),
    },
    address="{street}\n{postcode} {town}",
)

_FR = Phrasebook(
    tag="fr-FR", utc_offset=1,
    towns=("Amiens", "Angers", "Annecy", "Avignon", "Besançon", "Bordeaux", "Brest", "Caen",
           "Clermont-Ferrand", "Dijon", "Grenoble", "Le Havre", "Le Mans", "Lille", "Limoges",
           "Lyon", "Marseille", "Metz", "Montpellier", "Mulhouse", "Nancy", "Nantes", "Nice",
           "Nîmes", "Orléans", "Paris", "Perpignan", "Poitiers", "Reims", "Rennes", "Rouen",
           "Saint-Étienne", "Strasbourg", "Toulon", "Toulouse", "Tours"),
    relations=("Maman", "Papa", "Mamie", "Papi", "Tata Sophie", "Tonton Marc"),
    in_room={"kitchen": "dans la cuisine", "living room": "dans le salon",
             "bedroom": "dans la chambre", "bathroom": "dans la salle de bain",
             "office": "dans le bureau", "kids room": "dans la chambre des enfants",
             "hallway": "dans l'entrée", "dining room": "dans la salle à manger"},
    weekdays=("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    whens=("demain matin", "ce soir", "demain à {clock}", "{weekday}", "dans une heure",
           "à {clock}"),
    items=("du lait", "du pain", "des œufs", "du beurre", "du fromage", "des tomates",
           "des pommes de terre", "des pommes", "des bananes", "du café", "du papier toilette",
           "du liquide vaisselle", "des pâtes", "du riz", "des yaourts", "des oignons",
           "de la lessive", "des croquettes pour le chat", "des couches", "de l'eau gazeuse",
           "des céréales", "du saumon", "du jambon", "une baguette"),
    artists=("Stromae", "Angèle", "Indochine", "Céline Dion", "Johnny Hallyday", "Édith Piaf",
             "Jul", "Aya Nakamura", "Daft Punk", "Zaz", "Christine and the Queens", "Vianney",
             "Louane", "Orelsan", "Jean-Jacques Goldman", "Ed Sheeran", "Adele"),
    genres=("du jazz", "du rock", "de la musique classique", "du rap",
            "de la musique relaxante", "de la chanson française"),
    tasks=("de sortir les poubelles", "de prendre mes médicaments",
           "d'aller chercher le colis", "d'appeler {contact}",
           "du rendez-vous chez le docteur {doctor}", "de l'anniversaire de {contact}",
           "de payer la cantine", "d'arroser les plantes"),
    messages=("j'arrive dans dix minutes", "je vais être en retard", "tu peux prendre du pain",
              "le dîner est prêt", "je t'aime", "on est bien arrivés",
              "rappelle-moi s'il te plaît", "je suis en route"),
    foods=("pour les pâtes", "pour les œufs", "pour le gâteau", "pour la pizza", "pour le riz"),
    temps=(18, 23),
    templates={
        "weather": ("Quel temps fera-t-il demain à {town} ?", "Quelle est la météo à {town} ?",
                    "Est-ce qu'il va pleuvoir aujourd'hui à {town} ?",
                    "Quelle température fera-t-il {weekday} à {town} ?",
                    "Est-ce que j'ai besoin d'un parapluie à {town} aujourd'hui ?"),
        "call": ("Appelle {contact}.", "Appelle {contact} sur son portable.",
                 "Passe un appel à {contact}."),
        "message": ("Envoie un message à {contact} : {message}.",
                    "Écris à {contact} : {message}."),
        "shopping": ("Ajoute {item} à la liste de courses.",
                     "Mets {item} sur ma liste de courses.",
                     "Qu'est-ce qu'il y a sur ma liste de courses ?"),
        "reminder": ("Rappelle-moi {when} {task}.", "Rappelle-moi {when} {task}.",
                     "Quand est mon rendez-vous chez le docteur {doctor} ?"),
        "music": ("Mets {artist}.", "Joue {genre} {in_room}.",
                  "Mets le dernier album de {artist}.", "Plus fort.", "Chanson suivante.",
                  "Pause."),
        "timer": ("Mets un minuteur de {minutes} minutes.",
                  "Minuteur {food}, {minutes} minutes.",
                  "Combien de temps reste-t-il sur le minuteur ?",
                  "Réveille-moi demain à {clock}."),
        "smarthome": ("Allume la lumière {in_room}.", "Éteins la lumière {in_room}.",
                      "Règle le chauffage {in_room} sur {temp} degrés.",
                      "Baisse la lumière {in_room} à {pct} pour cent."),
        "other": ("Commande un taxi pour le {street}.",
                  "À quelle heure part le prochain train pour {town2} ?", "Quelle heure est-il ?",
                  "C'est quand l'anniversaire de {contact} ?", "Quelles sont les infos ?"),
    },
    address="{street}\n{postcode} {town}",
)

_EN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "weather": ("What's the weather like in {town} tomorrow?", "Will it rain in {town} today?",
                "How warm will it be in {town} on {weekday}?",
                "Do I need an umbrella in {town} today?", "What's the weather in {town}?"),
    "call": ("Call {contact}.", "Call {contact} on mobile.", "Drop in on {contact}."),
    "message": ("Send a message to {contact}: {message}.", "Tell {contact} {message}."),
    "shopping": ("Add {item} to my shopping list.", "Put {item} on the shopping list.",
                 "What's on my shopping list?"),
    "reminder": ("Remind me {when} to {task}.", "Remind me {when} to {task}.",
                 "When is my appointment with Dr. {doctor}?"),
    "music": ("Play {artist}.", "Play {genre} {in_room}.", "Play the new album by {artist}.",
              "Volume up.", "Next song.", "Stop."),
    "timer": ("Set a timer for {minutes} minutes.", "Set a {food} timer for {minutes} minutes.",
              "How much time is left on the timer?", "Wake me up at {clock} tomorrow."),
    "smarthome": ("Turn on the lights {in_room}.", "Turn off the lights {in_room}.",
                  "Set the heating {in_room} to {temp} degrees.",
                  "Dim the lights {in_room} to {pct} percent."),
    "other": ("Order a taxi to {street}.", "When's the next train to {town2}?",
              "What time is it?", "When is {contact}'s birthday?", "What's the news?"),
}
_EN_ROOMS = {"kitchen": "in the kitchen", "living room": "in the living room",
             "bedroom": "in the bedroom", "bathroom": "in the bathroom",
             "office": "in the office", "kids room": "in the kids' room",
             "hallway": "in the hallway", "dining room": "in the dining room"}
_EN_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EN_WHENS = ("tomorrow morning", "tonight", "at {clock}", "on {weekday}", "in an hour",
             "tomorrow at {clock}")
_EN_MESSAGES = ("I'll be there in ten minutes", "I'm running late",
                "can you pick up some bread", "dinner is ready", "love you",
                "we got home safe", "please call me back", "I'm on my way")

_US = Phrasebook(
    tag="en-US", utc_offset=-5,
    towns=("Albany, NY", "Ann Arbor, MI", "Asheville, NC", "Austin, TX", "Boise, ID",
           "Boulder, CO", "Burlington, VT", "Charleston, SC", "Columbus, OH", "Dayton, OH",
           "Des Moines, IA", "Eugene, OR", "Fresno, CA", "Madison, WI", "Omaha, NE",
           "Portland, ME", "Providence, RI", "Raleigh, NC", "Reno, NV", "Richmond, VA",
           "Rochester, NY", "Sacramento, CA", "Savannah, GA", "Spokane, WA", "Syracuse, NY",
           "Tacoma, WA", "Tucson, AZ", "Tulsa, OK", "Wichita, KS", "Knoxville, TN"),
    relations=("Mom", "Dad", "Grandma", "Grandpa", "Aunt Linda", "Uncle Joe"),
    in_room=_EN_ROOMS, weekdays=_EN_WEEKDAYS, whens=_EN_WHENS,
    items=("milk", "oat milk", "bread", "eggs", "butter", "cheese", "tomatoes", "potatoes",
           "apples", "bananas", "coffee", "toilet paper", "dish soap", "pasta", "rice",
           "yogurt", "onions", "laundry detergent", "cat food", "diapers", "sparkling water",
           "cereal", "salmon", "ground beef", "peanut butter"),
    artists=("Taylor Swift", "Bruce Springsteen", "Beyoncé", "Kendrick Lamar", "Billie Eilish",
             "Dolly Parton", "Fleetwood Mac", "The Killers", "Olivia Rodrigo", "Johnny Cash",
             "Prince", "Norah Jones", "Luke Combs", "Ed Sheeran"),
    genres=("jazz", "rock", "classical music", "hip hop", "relaxing music", "country music"),
    tasks=("take out the trash", "take my pills", "pick up the package", "call {contact}",
           "book an appointment with Dr. {doctor}", "buy a present for {contact}",
           "water the plants", "pay the electric bill"),
    messages=_EN_MESSAGES,
    foods=("pasta", "egg", "cake", "pizza", "rice"),
    temps=(64, 74),
    templates={**_EN_TEMPLATES,
               "smarthome": ("Turn on the lights {in_room}.", "Turn off the lights {in_room}.",
                             "Set the thermostat {in_room} to {temp} degrees.",
                             "Dim the lights {in_room} to {pct} percent.")},
    address="{street}\n{town} {postcode}",
)

_GB = Phrasebook(
    tag="en-GB", utc_offset=0,
    towns=("Bath", "Brighton", "Bristol", "Cambridge", "Cardiff", "Carlisle", "Chester",
           "Colchester", "Derby", "Durham", "Exeter", "Glasgow", "Gloucester", "Harrogate",
           "Ipswich", "Lancaster", "Leeds", "Leicester", "Lincoln", "Liverpool", "Manchester",
           "Newcastle upon Tyne", "Norwich", "Nottingham", "Oxford", "Plymouth", "Reading",
           "Sheffield", "Swansea", "York"),
    relations=("Mum", "Dad", "Nan", "Grandad", "Auntie Sue", "Uncle Dave"),
    in_room=_EN_ROOMS, weekdays=_EN_WEEKDAYS, whens=_EN_WHENS,
    items=("milk", "oat milk", "bread", "eggs", "butter", "cheese", "tomatoes", "potatoes",
           "apples", "bananas", "coffee", "teabags", "toilet roll", "washing-up liquid",
           "pasta", "rice", "yoghurt", "onions", "washing powder", "cat food", "nappies",
           "sparkling water", "cereal", "salmon", "mince", "crumpets"),
    artists=("Ed Sheeran", "Adele", "Coldplay", "Oasis", "The Beatles", "Arctic Monkeys",
             "Dua Lipa", "Stormzy", "Elton John", "Queen", "Florence and the Machine", "Blur",
             "Lewis Capaldi", "Radiohead"),
    genres=("jazz", "rock", "classical music", "hip hop", "relaxing music", "Radio 2"),
    tasks=("put the bins out", "take my tablets", "collect the parcel", "ring {contact}",
           "book an appointment with Dr {doctor}", "buy a card for {contact}",
           "water the plants", "pay the council tax"),
    messages=_EN_MESSAGES,
    foods=("pasta", "egg", "cake", "pizza", "rice"),
    temps=(18, 23),
    templates={**_EN_TEMPLATES,
               "reminder": ("Remind me {when} to {task}.", "Remind me {when} to {task}.",
                            "When is my appointment with Dr {doctor}?")},
    address="{street}\n{town}\n{postcode}",
)

PHRASEBOOKS: dict[str, Phrasebook] = {"de_DE": _DE, "fr_FR": _FR, "en_US": _US, "en_GB": _GB}


class WorldError(ValueError):
    """A world cannot be built as specified (unknown locale, duplicate key...)."""


@dataclass(frozen=True)
class HouseholdSpec:
    """What a scenario asks for; anything left ``None`` is drawn from the seed."""

    key: str
    members: int | None = None
    devices: int | None = None
    recordings: int | None = None
    """Exact number of utterances over a traffic run (``None``: the household's own rate)."""
    locale: str | None = None
    """Overrides the world's locale for this household."""


@dataclass(frozen=True)
class Speaker:
    """A person in a household who talks to the devices."""

    speaker_id: str
    """Stable id, ``<household>.m<n>`` (the ledger's ``speaker``)."""
    name: str
    kind: VoiceKind
    profile: VoiceProfile
    locale: str = "de_DE"
    """The language the speaker talks to the devices in (the household's)."""
    engine: VoiceEngine = "speech"

    @cached_property
    def voice(self) -> Voice:
        """Made on first use, then reused (renders are cached by the voice)."""
        return make_voice(self.profile, self.locale, self.kind, self.engine)


@dataclass(frozen=True)
class Device:
    """An Echo-like speaker in a room."""

    serial: str
    model: str
    room: str
    """One of :data:`ROOMS` (English, as registered with the backend)."""


@dataclass(frozen=True)
class Holder:
    """The account holder: who the backend knows the account by."""

    name: str
    email: str
    address: str
    locale: str
    """Faker-style locale (``de_DE``)."""


@dataclass(frozen=True)
class Utterance:
    """One thing said to one device at one moment."""

    utterance_id: str
    household: str
    device_serial: str
    speaker: Speaker
    recorded_at: datetime
    transcript: str
    locale: str
    """BCP 47 tag (``de-DE``) as sent in ``utterance.end``."""
    intent: str
    parts: tuple[str, ...] = ()
    """The transcript in the pieces it was made of: template text and slot values (names,
    towns, items), so that each piece is rendered once per speaker and reused."""

    @property
    def recorded_at_iso(self) -> str:
        """RFC 3339, milliseconds, ``Z``: the wire and ledger form."""
        return self.recorded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def pcm(self) -> bytes:
        """The audio: the speaker's voice saying the transcript (16 kHz mono s16le)."""
        return self.speaker.voice.say_parts(self.parts or (self.transcript,), self.utterance_id)


@dataclass(frozen=True)
class Household:
    """A home: an account holder, members who speak, devices, and habits."""

    key: str
    seed: int
    locale: str
    holder: Holder
    members: tuple[Speaker, ...]
    devices: tuple[Device, ...]
    town: str
    street: str
    doctor: str
    contacts: tuple[str, ...]
    artists: tuple[str, ...]
    rate_per_day: float
    """Mean utterances per day when no exact count is asked for."""
    hour_weights: tuple[float, ...]
    """Relative use per local hour (24 values)."""
    intent_weights: tuple[float, ...]
    speaker_weights: tuple[float, ...]
    device_weights: tuple[float, ...]
    recordings: int | None = None

    @property
    def phrasebook(self) -> Phrasebook:
        return PHRASEBOOKS[self.locale]

    def with_devices(self, devices: Sequence[Device]) -> Household:
        """The same household with another set of devices (bought, sold, registered).

        Rooms outside :data:`ROOMS` weigh like the least-used room.
        """
        weights = tuple(_ROOM_WEIGHTS[ROOMS.index(d.room)] if d.room in ROOMS
                        else min(_ROOM_WEIGHTS) for d in devices)
        return replace(self, devices=tuple(devices), device_weights=weights)

    def account_payload(self) -> dict[str, str]:
        """Body of ``POST /v1/accounts`` for this household."""
        return {"name": self.holder.name, "email": self.holder.email,
                "locale": self.phrasebook.tag}

    def traffic(self, start: datetime, days: float, count: int | None = None) -> list[Utterance]:
        """Utterances from ``start`` over ``days``, in time order.

        ``count`` (or the household's ``recordings``) fixes the number exactly; otherwise
        each day draws from the household's rate. The same arguments give the same list.
        """
        if not self.devices or days <= 0:
            return []
        count = count if count is not None else self.recordings
        rng = random.Random(f"{self.seed}/traffic/{start.isoformat()}/{days}/{count}")
        offset = timedelta(hours=self.phrasebook.utc_offset)
        cum_hours = list(accumulate(self.hour_weights))
        span = timedelta(days=days)

        def moment(day: int) -> datetime:
            hour = rng.choices(range(24), cum_weights=cum_hours)[0]
            ms = rng.randrange(3_600_000)
            # local hour of the pattern → UTC
            return start + timedelta(days=day, hours=hour, milliseconds=ms) - offset

        whole_days = max(1, math.ceil(days))
        times: list[datetime] = []
        if count is not None:
            while len(times) < count:
                t = moment(rng.randrange(whole_days))
                if start <= t < start + span:
                    times.append(t)
        else:
            for day in range(whole_days):
                for _ in range(_poisson(rng, self.rate_per_day)):
                    t = moment(day)
                    if start <= t < start + span:
                        times.append(t)
        times.sort()
        speak = _Speech(self, rng)
        return [speak.utterance(t) for t in times]


class _Slots(dict[str, str]):
    """Template slots drawn only when a template names them."""

    def __init__(self, speech: _Speech, device: Device) -> None:
        super().__init__()
        self.speech = speech
        self.device = device
        self.nested: dict[str, str] = {}
        """Slots whose value is itself a template (``when``, ``task``): that template."""

    def __missing__(self, name: str) -> str:
        value = self.speech.slot(name, self)
        self[name] = value
        return value


class _Speech:
    """Fills templates for one household with its own random stream."""

    def __init__(self, household: Household, rng: random.Random) -> None:
        self.h = household
        self.rng = rng
        self.book = household.phrasebook
        self.cum_intents = list(accumulate(household.intent_weights))
        self.cum_speakers = list(accumulate(household.speaker_weights))
        self.cum_devices = list(accumulate(household.device_weights))
        self.rooms = sorted({d.room for d in household.devices} | {"living room", "kitchen"})

    def utterance(self, at: datetime) -> Utterance:
        rng = self.rng
        h = self.h
        device = h.devices[rng.choices(range(len(h.devices)), cum_weights=self.cum_devices)[0]]
        speaker = h.members[rng.choices(range(len(h.members)), cum_weights=self.cum_speakers)[0]]
        intent = _INTENTS[rng.choices(range(len(_INTENTS)), cum_weights=self.cum_intents)[0]]
        template = rng.choice(self.book.templates[intent])
        slots = _Slots(self, device)
        text = template.format_map(slots)
        text = text[0].upper() + text[1:]
        parts = _parts(template, slots)
        parts[0] = parts[0][0].upper() + parts[0][1:]
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # the wire carries ms
        return Utterance(uid, h.key, device.serial, speaker, at, text, self.book.tag, intent,
                         tuple(parts))

    def slot(self, name: str, slots: _Slots) -> str:
        filler = _SLOT_FILLERS.get(name)
        if filler is None:
            raise KeyError(name)
        return filler(self, slots)


def _town(s: _Speech, slots: _Slots) -> str:
    # mostly home; sometimes where the family or the holiday is
    return s.h.town if s.rng.random() < 0.85 else s.rng.choice(s.book.towns)


def _artist(s: _Speech, slots: _Slots) -> str:
    return s.rng.choice(s.h.artists) if s.rng.random() < 0.8 else s.rng.choice(s.book.artists)


def _clock(s: _Speech, slots: _Slots) -> str:
    return s.book.clock(s.rng.choice((6, 7, 8, 9, 12, 14, 16, 17, 18, 19, 20)),
                        s.rng.choice((0, 0, 15, 30, 45)))


def _nested(name: str) -> Callable[[_Speech, _Slots], str]:
    """A slot filled with a template of its own (``when``, ``task``), itself filled."""
    def fill(s: _Speech, slots: _Slots) -> str:
        sub = s.rng.choice(s.book.whens if name == "when" else s.book.tasks)
        slots.nested[name] = sub
        return sub.format_map(slots)
    return fill


def _in_room(s: _Speech, slots: _Slots) -> str:
    room = slots.device.room if s.rng.random() < 0.6 else s.rng.choice(s.rooms)
    return s.book.in_room[room]


_SLOT_FILLERS: dict[str, Callable[[_Speech, _Slots], str]] = {
    "town": _town,
    "town2": lambda s, _: s.rng.choice([t for t in s.book.towns if t != s.h.town]),
    "contact": lambda s, _: s.rng.choice(s.h.contacts),
    "doctor": lambda s, _: s.h.doctor,
    "street": lambda s, _: s.h.street,
    "item": lambda s, _: s.rng.choice(s.book.items),
    "artist": _artist,
    "genre": lambda s, _: s.rng.choice(s.book.genres),
    "message": lambda s, _: s.rng.choice(s.book.messages),
    "food": lambda s, _: s.rng.choice(s.book.foods),
    "minutes": lambda s, _: str(s.rng.choice((1, 2, 3, 4, 5, 7, 8, 10, 12, 15, 20, 25, 30, 45))),
    "temp": lambda s, _: str(s.rng.randint(*s.book.temps)),
    "pct": lambda s, _: str(s.rng.choice((10, 20, 25, 30, 40, 50, 60, 70, 75, 80))),
    "weekday": lambda s, _: s.rng.choice(s.book.weekdays),
    "clock": _clock,
    "when": _nested("when"),
    "task": _nested("task"),
    "in_room": _in_room,
}
"""What fills each slot of a template: the household's own details, or a seeded pick."""


_FORMATTER = string.Formatter()


def _parts(template: str, slots: _Slots) -> list[str]:
    """``template`` filled from ``slots`` as pieces: its own text between the slots, and each
    slot's value (nested templates split the same way). Punctuation sticks to the piece
    before it, so a town at the end of a question is rendered with its rising tone."""
    raw: list[str] = []
    for literal, field, _, _ in _FORMATTER.parse(template):
        raw.append(literal)
        if field is not None:
            if field in slots.nested:
                raw.extend(_parts(slots.nested[field], slots))
            else:
                raw.append(slots[field])
    out: list[str] = []
    for piece in raw:
        piece = piece.strip()
        if not piece:
            continue
        if out and not piece[0].isalnum():
            head, _, rest = piece.partition(" ")
            out[-1] = f"{out[-1]} {head}" if head in "?!:;" else out[-1] + head
            if rest.strip():
                out.append(rest.strip())
        else:
            out.append(piece)
    # a lone short word between two slots ("an", "to") is said with what follows it: on its
    # own it would be a sentence of one syllable
    merged: list[str] = []
    for piece in out:
        if merged and len(merged[-1]) <= 3 and merged[-1].isalpha():
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged or [template]


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: fine for the small daily rates used here."""
    limit = math.exp(-lam)
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in ".-")).lower()


def household_seed(world_seed: int, key: str) -> int:
    """A household's seed: a function of the world seed and its key only."""
    digest = hashlib.sha256(f"overheard/{world_seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


_FAKERS: dict[str, Faker] = {}


def _faker(locale: str, seed: int) -> Faker:
    # Building a Faker costs tens of milliseconds; one per locale, re-seeded per household,
    # gives the same values as a fresh seeded instance.
    fake = _FAKERS.get(locale)
    if fake is None:
        fake = _FAKERS[locale] = Faker(locale)
    fake.seed_instance(seed)
    return fake


def build_household(world_seed: int, spec: HouseholdSpec, locale: str,
                    engine: VoiceEngine = "speech") -> Household:
    """Draw one household from its own seed (independent of every other household).

    ``engine`` picks the members' voices (it draws nothing: the household is the same).
    """
    if locale not in PHRASEBOOKS:
        raise WorldError(f"unknown locale {locale!r}; known: {', '.join(LOCALES)}")
    book = PHRASEBOOKS[locale]
    seed = household_seed(world_seed, spec.key)
    rng = random.Random(seed)
    fake = _faker(locale, seed)

    n_members = spec.members if spec.members is not None else rng.choice((1, 2, 2, 2, 3, 3, 4))
    n_devices = spec.devices if spec.devices is not None else rng.choice((1, 1, 2, 2, 3))
    if n_members < 1 and n_devices > 0:
        raise WorldError(f"household {spec.key!r}: devices need at least one member")
    if n_members < 0 or n_devices < 0 or (spec.recordings is not None and spec.recordings < 0):
        raise WorldError(f"household {spec.key!r}: counts must not be negative")

    last = fake.last_name()
    kinds: list[VoiceKind] = []
    names: list[str] = []
    for i in range(n_members):
        kind: VoiceKind
        if i == 0:
            kind = rng.choice(("male", "female"))
        elif i == 1:  # a partner, most often of the other sex
            other: VoiceKind = "female" if kinds[0] == "male" else "male"
            kind = other if rng.random() < 0.85 else kinds[0]
        else:
            kind = "child"
        male = kind == "male" or (kind == "child" and rng.random() < 0.5)
        first = fake.first_name_male() if male else fake.first_name_female()
        surname = last if i != 1 or rng.random() < 0.7 else fake.last_name()
        kinds.append(kind)
        names.append(f"{first} {surname}")
    members = tuple(
        Speaker(f"{spec.key}.m{i + 1}", names[i], kinds[i], VoiceProfile.draw(rng, kinds[i]),
                locale, engine)
        for i in range(n_members)
    )
    holder_name = names[0] if names else f"{fake.first_name()} {last}"
    first, _, surname = holder_name.partition(" ")
    local = rng.choice((f"{first}.{surname}", f"{first[0]}.{surname}", f"{first}{surname}",
                        f"{first}.{surname}{rng.randint(1, 99)}"))
    email = f"{_ascii(local)}@{fake.free_email_domain()}"
    town = rng.choice(book.towns)
    street = fake.street_address().replace("\n", ", ")  # en_GB puts flat numbers on a line
    address = book.address.format(street=street, postcode=fake.postcode(), town=town)

    models = list(DEVICE_MODELS)
    rooms = list(ROOMS)
    weights = list(_ROOM_WEIGHTS)
    devices = []
    for _ in range(n_devices):
        if not rooms:
            rooms, weights = list(ROOMS), list(_ROOM_WEIGHTS)
        idx = rng.choices(range(len(rooms)), weights=weights)[0]
        room = rooms.pop(idx)
        weights.pop(idx)
        model = rng.choice(models)
        serial = DEVICE_MODELS[model] + f"{rng.randrange(10**10):010d}"
        devices.append(Device(serial, model, room))

    others = [n.split(" ")[0] for n in names[1:]]
    contacts = others + rng.sample(book.relations, rng.randint(1, 3))
    for _ in range(rng.randint(2, 5)):
        full = rng.random() < 0.5
        contacts.append(f"{fake.first_name()} {fake.last_name()}" if full else fake.first_name())
    hours_shift = rng.randint(-1, 2)
    hour_weights = tuple(round(_HOURS[(h - hours_shift) % 24] * rng.uniform(0.6, 1.4), 4)
                         for h in range(24))
    intent_weights = tuple(round(w * rng.uniform(0.3, 1.7), 4) for w in _INTENT_WEIGHTS)
    speaker_weights = tuple(
        1.0 if i == 0 else round(rng.uniform(0.3, 1.0) * (0.4 if k == "child" else 1.0), 4)
        for i, k in enumerate(kinds))
    device_weights = tuple(_ROOM_WEIGHTS[ROOMS.index(d.room)] for d in devices)
    rate = round(rng.uniform(3.0, 14.0) * (0.6 + 0.4 * max(1, n_members)), 3)
    return Household(
        key=spec.key, seed=seed, locale=locale,
        holder=Holder(holder_name, email, address, locale),
        members=members, devices=tuple(devices), town=town, street=street,
        doctor=fake.last_name(), contacts=tuple(contacts),
        artists=tuple(rng.sample(book.artists, 3)), rate_per_day=rate,
        hour_weights=hour_weights, intent_weights=intent_weights,
        speaker_weights=speaker_weights, device_weights=device_weights,
        recordings=spec.recordings,
    )


@dataclass(frozen=True)
class World:
    """All households of a run, and the start of the simulated clock."""

    seed: int
    locale: str
    start: datetime
    households: tuple[Household, ...]

    @classmethod
    def build(cls, seed: int, locale: str = "de_DE", households: Sequence[HouseholdSpec] = (),
              background: int = 0, start: datetime | None = None,
              voice: VoiceEngine = "speech") -> World:
        """Named households from ``households``, then ``background`` more keyed ``h001``...

        ``start`` (an aware datetime) defaults to a midnight in 2018 drawn from the seed.
        ``voice`` is ``"speech"`` (eSpeak NG) or ``"fast"`` (the letter splice).
        """
        if locale not in PHRASEBOOKS:
            raise WorldError(f"unknown locale {locale!r}; known: {', '.join(LOCALES)}")
        keys = [s.key for s in households]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise WorldError(f"duplicate household keys: {', '.join(dupes)}")
        specs = list(households)
        n = 0
        while len(specs) < len(households) + background:
            n += 1
            key = f"h{n:03d}"
            if key not in keys:
                specs.append(HouseholdSpec(key))
        built = [build_household(seed, s, s.locale or locale, voice) for s in specs]
        _make_unique(built)
        if start is None:
            start = _EPOCH + timedelta(days=random.Random(f"overheard/{seed}/start").randrange(365))
        elif start.tzinfo is None:
            raise WorldError("start must be timezone-aware")
        return cls(seed, locale, start.astimezone(UTC), tuple(built))

    def household(self, key: str) -> Household:
        for h in self.households:
            if h.key == key:
                return h
        raise KeyError(key)

    def traffic(self, days: float, start: datetime | None = None,
                keys: Iterable[str] | None = None) -> list[Utterance]:
        """Every household's utterances over ``days`` from ``start`` (default: the world's).

        Sorted by time, then utterance id.
        """
        start = start or self.start
        wanted = set(keys) if keys is not None else None
        out: list[Utterance] = []
        for h in self.households:
            if wanted is None or h.key in wanted:
                out.extend(h.traffic(start, days))
        out.sort(key=lambda u: (u.recorded_at, u.utterance_id))
        return out

    def speaker(self, speaker_id: str) -> Speaker:
        key = speaker_id.rsplit(".", 1)[0]
        for s in self.household(key).members:
            if s.speaker_id == speaker_id:
                return s
        raise KeyError(speaker_id)


def _make_unique(households: list[Household]) -> None:
    """Emails and serials are unique across a world; a rare clash gets a deterministic suffix."""
    emails: set[str] = set()
    serials: set[str] = set()
    for i, h in enumerate(households):
        email = h.holder.email
        n = 1
        while email in emails:
            n += 1
            local, _, domain = h.holder.email.partition("@")
            email = f"{local}{n}@{domain}"
        emails.add(email)
        devices = []
        for d in h.devices:
            serial = d.serial
            while serial in serials:
                serial = serial[:6] + f"{(int(serial[6:]) + 1) % 10**10:010d}"
            serials.add(serial)
            devices.append(Device(serial, d.model, d.room))
        if email != h.holder.email or tuple(devices) != h.devices:
            holder = Holder(h.holder.name, email, h.holder.address, h.holder.locale)
            households[i] = replace(h, holder=holder, devices=tuple(devices))
