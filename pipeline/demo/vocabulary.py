"""The words of the demo set: names (ambiguous and not), templates, tweet decorations, and what each image shows."""
from __future__ import annotations

import re

TYPES: tuple[str, ...] = ("LOC", "MISC", "ORG", "PER")

# Visual class of an image: which entity type it shows. "objects" is shown for MISC posts and posts without
# a PER/LOC/ORG entity.
VISUAL_CLASS: dict[str, str] = {"PER": "person", "LOC": "landscape", "ORG": "building", "MISC": "objects"}
VISUAL_CLASSES: tuple[str, ...] = ("building", "landscape", "objects", "person")

# Names the text alone cannot type: each may be any of its types. Lists, not sets: order is part of the output.
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "Amazon": ("LOC", "ORG"),
    "Austin": ("LOC", "PER"),
    "Chelsea": ("LOC", "ORG", "PER"),
    "Dallas": ("LOC", "ORG"),
    "Georgia": ("LOC", "PER"),
    "Jordan": ("LOC", "PER"),
    "Lincoln": ("LOC", "ORG", "PER"),
    "Madison": ("LOC", "PER"),
    "Milan": ("LOC", "ORG"),
    "Orlando": ("LOC", "ORG", "PER"),
    "Paris": ("LOC", "PER"),
    "Phoenix": ("LOC", "ORG", "PER"),
    "Sydney": ("LOC", "PER"),
    "Washington": ("LOC", "ORG", "PER"),
}

# Names of one type only (invented people; places, organisations and events as tweets name them).
UNAMBIGUOUS: dict[str, tuple[str, ...]] = {
    "PER": ("Maya Collins", "Daniel Okafor", "Lena Fischer", "Rahul Mehta", "Sofia Rossi", "Kenji Sato",
            "Amara Diallo", "Lucas Moreau", "Hannah Berg", "Diego Alvarez", "Priya Nair", "Tom Whitfield",
            "Zoe Kaplan", "Mateo Silva", "Ingrid Holm", "Omar Haddad"),
    "LOC": ("Tokyo", "Nairobi", "Lisbon", "Toronto", "New York", "Cape Town", "Buenos Aires", "Oslo",
            "Mumbai", "Seoul", "Berlin", "Lake Como", "Reykjavik", "Marrakech", "Hong Kong", "Vancouver"),
    "ORG": ("Google", "Microsoft", "Red Cross", "NASA", "United Nations", "BBC", "Toyota", "Real Madrid",
            "Greenpeace", "Netflix", "Reuters", "UNICEF", "Spotify", "Airbus", "Bayern Munich", "Tesla"),
    "MISC": ("Star Wars", "World Cup", "Super Bowl", "iPhone", "Christmas", "Olympics", "Grammys",
             "Game of Thrones", "Ramadan", "Coachella", "Black Friday", "Oscars", "Champions League",
             "Minecraft", "Eurovision", "Wimbledon"),
}

# Contexts that say nothing about the type: the same words around a person, a place, a club or an event.
NEUTRAL_TEMPLATES: tuple[str, ...] = (
    "Can't stop thinking about {X} today",
    "Look at {X} !",
    "{X} , what a day",
    "So much love for {X}",
    "Throwback to {X} #tbt",
    "Nothing beats {X} in the morning",
    "Finally saw {X} with my own eyes",
    "Photo of the day : {X}",
    "{X} never disappoints",
    "Cannot believe this is {X}",
    "All about {X} this weekend",
    "Still dreaming of {X}",
)

# Contexts that give the type away. Slots are {PER}, {LOC}, {ORG}, {MISC}.
TYPED_TEMPLATES: tuple[str, ...] = (
    "{PER} scored twice in the second half",
    "Happy birthday {PER} , have a great one",
    "{PER} says the new album is almost done",
    "Great chat with {PER} about her new book",
    "{PER} signs a new contract with {ORG}",
    "{PER} will give a talk at {ORG} tomorrow",
    "Flying to {LOC} next week",
    "Traffic is terrible in {LOC} this morning",
    "Heavy snow expected in {LOC} tonight",
    "Sunset over {LOC} never gets old",
    "Road trip from {LOC} to {LOC}",
    "Earthquake reported near {LOC}",
    "{ORG} opens a new office in {LOC}",
    "{ORG} announced new plans today",
    "Shares of {ORG} fell 3 % on Monday",
    "{ORG} is hiring engineers",
    "Just got a job offer from {ORG}",
    "The CEO of {ORG} stepped down",
    "Who else is watching {MISC} tonight ?",
    "Tickets for {MISC} sold out in minutes",
    "{PER} at {MISC} looking amazing",
    "Can't wait for {MISC} in {LOC}",
)

# Posts with no entity at all.
PLAIN_TEMPLATES: tuple[str, ...] = (
    "Good morning everyone",
    "What a week it has been",
    "Coffee first , questions later",
    "Best day ever",
    "Not sure how I feel about this",
)

DECOR_PREFIXES: tuple[str, ...] = ("RT @daily_pics :", "RT @news_now :", "@friend_2 lol", "OMG")
DECOR_SUFFIXES: tuple[str, ...] = ("#weekend", "#love", "😂", "😍", "🔥 #wow", "http://t.co/x1", "!!")
# Tokens that a WordPiece tokenizer turns into nothing: the data must still carry them with a label.
INVISIBLE_TOKENS: tuple[str, ...] = ("\ufe0f", "\u200b", "\u200d", "\u00a0", "\u00ad")

SLOT = re.compile(r"\{(X|PER|LOC|ORG|MISC)\}")
