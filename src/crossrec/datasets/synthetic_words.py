"""Word lists and title templates for the synthetic generator.

Titles on every platform are built from the same topic words, so "jazz piano trio live" (music)
and "a history of jazz piano" (books) are close in a sentence-encoder space while sharing no id.
"""

from __future__ import annotations

#: Topic name -> words and short phrases about it (category of the items is the topic name).
TOPICS: dict[str, tuple[str, ...]] = {
    "jazz": ("jazz", "piano trio", "saxophone", "bebop", "swing", "big band", "trumpet",
             "double bass", "improvisation", "blue note", "cool jazz", "late night club"),
    "rock": ("rock", "electric guitar", "punk", "garage band", "riffs", "drum kit", "grunge",
             "stadium tour", "amplifier", "power chords", "indie rock", "rebel youth"),
    "classical": ("symphony", "orchestra", "violin", "sonata", "opera", "string quartet",
                  "concerto", "baroque", "conductor", "chamber music", "cello", "requiem"),
    "electronic": ("techno", "synthesizer", "house music", "dj set", "dance floor", "beats",
                   "drum machine", "ambient", "rave", "modular synth", "bass drop", "club night"),
    "cooking": ("cooking", "recipes", "kitchen", "baking", "pasta", "chef", "spices",
                "sourdough bread", "home cooking", "knife skills", "desserts", "street food"),
    "travel": ("travel", "backpacking", "road trip", "islands", "mountains", "passport",
               "city guide", "train journey", "adventure", "beaches", "hiking trail", "wanderlust"),
    "history": ("history", "ancient rome", "world war", "empire", "medieval castle", "revolution",
                "archaeology", "pharaohs", "vikings", "civil war", "kings and queens", "dynasty"),
    "science": ("physics", "chemistry", "quantum", "evolution", "laboratory", "experiments",
                "the brain", "genetics", "relativity", "microbes", "scientific method", "atoms"),
    "space": ("space", "astronomy", "planets", "rockets", "mars", "galaxy", "astronaut",
              "telescope", "black holes", "moon landing", "stars", "space station"),
    "football": ("football", "soccer", "world cup", "goalkeeper", "league", "striker",
                 "penalty kick", "stadium", "champions", "transfer market", "derby", "coach"),
    "fitness": ("fitness", "workout", "running", "yoga", "strength training", "marathon",
                "cardio", "stretching", "gym", "healthy habits", "cycling", "endurance"),
    "fantasy": ("fantasy", "dragons", "wizards", "magic", "elves", "enchanted forest", "quest",
                "sorcery", "kingdom", "sword", "prophecy", "dark lord"),
    "crime": ("crime", "detective", "murder mystery", "police", "heist", "gangsters",
              "investigation", "courtroom", "forensics", "serial killer", "mafia", "noir"),
    "romance": ("romance", "love story", "wedding", "first kiss", "heartbreak", "summer love",
                "soulmates", "valentine", "second chances", "love letters", "honeymoon", "dating"),
    "gardening": ("gardening", "roses", "vegetable garden", "seeds", "compost", "houseplants",
                  "greenhouse", "pruning", "flowers", "orchard", "herbs", "garden design"),
    "photography": ("photography", "camera", "lenses", "portraits", "landscape photos",
                    "black and white", "darkroom", "film camera", "lighting", "street photography",
                    "tripod", "exposure"),
    "programming": ("programming", "python", "algorithms", "software", "coding", "databases",
                    "web development", "machine learning", "debugging", "open source", "compilers",
                    "computer science"),
    "horror": ("horror", "ghosts", "haunted house", "zombies", "vampires", "nightmare",
               "slasher", "curse", "monsters", "graveyard", "possession", "witches"),
    "comedy": ("comedy", "stand-up", "jokes", "sitcom", "satire", "laughter", "parody",
               "improv", "funny stories", "comedians", "pranks", "sketches"),
    "nature": ("nature", "wildlife", "oceans", "rainforest", "birds", "whales", "wolves",
               "national parks", "insects", "coral reef", "savanna", "polar bears"),
    "cars": ("cars", "motorsport", "formula one", "engines", "classic cars", "racing",
             "supercars", "road racing", "garage", "electric cars", "rally", "motorcycles"),
    "fashion": ("fashion", "style", "runway", "designer", "vintage clothing", "sneakers",
                "tailoring", "streetwear", "handbags", "fashion week", "dresses", "jewelry"),
    "gaming": ("video games", "gaming", "consoles", "arcade", "role-playing games", "esports",
               "pixel art", "speedrun", "game design", "retro games", "controllers", "open world"),
    "economics": ("economics", "money", "markets", "investing", "stock market", "inflation",
                  "banking", "startups", "entrepreneurs", "personal finance", "trade", "wealth"),
}  # fmt: skip

#: Platform kind -> title templates ({a}, {b}: topic words; {n}: a small number).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "video": ("{a} and {b}", "inside {a}: {b}", "the {a} show", "{a} {b} documentary",
              "{a} {b} highlights", "{a} explained", "life of {a}, episode {n}",
              "{b} and {a}: the movie"),
    "music": ("{a} {b} live", "{a} {b} sessions", "songs of {a}", "the sound of {a}",
              "{a} {b} (remastered)", "{a} {b} vol. {n}", "{b} in {a}", "{a} nights"),
    "books": ("a history of {a} {b}", "the {a} handbook", "{a} and {b}: a novel",
              "the art of {a}", "understanding {a} and {b}", "{a} for beginners",
              "the {b} chronicles, book {n}", "notes on {a}"),
    "shop": ("{a} {b} starter kit", "{a} gift set", "premium {a} {b}", "{a} accessories",
             "{a} {b} poster", "{a} essentials pack", "{b} t-shirt", "{a} {b} collector's box"),
}  # fmt: skip

#: Platform kind -> (event type, sentence opening of an item's text).
KINDS: dict[str, tuple[str, str]] = {
    "video": ("watch", "A video about"),
    "music": ("play", "An album about"),
    "books": ("rating", "A book about"),
    "shop": ("purchase", "A product for fans of"),
}
KIND_ORDER: tuple[str, ...] = ("video", "music", "books", "shop")
