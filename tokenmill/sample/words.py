"""Word lists the sample corpus is built from.

Large enough that two random documents share almost no word 5-grams, and
plain enough that the text passes Gopher-style quality rules.
"""

TOPICS: dict[str, list[str]] = {
    "gardening": ["tomato", "hedge", "compost", "seedling", "greenhouse", "orchard", "shovel", "mulch",
                  "tulip", "root", "pumpkin", "vineyard", "trellis", "beetle", "fern", "rosebush",
                  "allotment", "fertilizer", "lawn", "blossom", "cucumber", "raspberry", "soil", "pond"],
    "astronomy": ["telescope", "comet", "galaxy", "nebula", "observatory", "orbit", "meteor", "planet",
                  "asteroid", "eclipse", "satellite", "crater", "star", "moon", "spectrum", "lens",
                  "horizon", "constellation", "pulsar", "supernova", "mirror", "eyepiece", "dome", "sky"],
    "cooking": ["recipe", "kitchen", "oven", "dumpling", "sauce", "skillet", "bakery", "pastry",
                "omelette", "broth", "spice", "ladle", "noodle", "loaf", "dough", "cheese",
                "marinade", "casserole", "pantry", "apron", "chef", "waffle", "stew", "pepper"],
    "railways": ["locomotive", "platform", "timetable", "carriage", "signal", "junction", "depot",
                 "conductor", "tunnel", "viaduct", "sleeper", "freight", "station", "ticket", "engine",
                 "siding", "whistle", "railcar", "bridge", "route", "porter", "turntable", "coach", "track"],
    "finance": ["budget", "invoice", "ledger", "mortgage", "pension", "dividend", "auditor", "loan",
                "portfolio", "account", "bond", "premium", "broker", "fund", "market", "deposit",
                "merger", "salary", "receipt", "forecast", "tariff", "treasury", "balance", "asset"],
    "medicine": ["clinic", "patient", "vaccine", "nurse", "surgeon", "symptom", "therapy", "ward",
                 "diagnosis", "pharmacy", "bandage", "fever", "hospital", "doctor", "remedy", "tablet",
                 "infection", "scanner", "midwife", "ambulance", "allergy", "dentist", "injury", "pulse"],
    "sailing": ["harbour", "mast", "anchor", "sailboat", "rudder", "lighthouse", "tide", "deck",
                "captain", "voyage", "keel", "ferry", "channel", "compass", "buoy", "jetty",
                "schooner", "crew", "wave", "sail", "marina", "cargo", "fleet", "rope"],
    "software": ["compiler", "server", "database", "library", "kernel", "browser", "debugger", "script",
                 "terminal", "keyboard", "network", "backup", "release", "module", "cluster", "query",
                 "interface", "repository", "laptop", "firewall", "package", "thread", "cache", "bug"],
    "history": ["castle", "empire", "treaty", "monastery", "archive", "chronicle", "dynasty", "fortress",
                "manuscript", "parliament", "revolution", "colony", "cathedral", "museum", "relic",
                "battle", "kingdom", "pilgrim", "harvest", "guild", "village", "scribe", "charter", "ruin"],
    "music": ["orchestra", "violin", "melody", "concert", "choir", "rehearsal", "piano", "drummer",
              "symphony", "ballad", "guitar", "audience", "composer", "trumpet", "chorus", "album",
              "conductor", "festival", "lyric", "harmony", "cello", "studio", "rhythm", "stage"],
    "weather": ["storm", "drizzle", "thunder", "forecast", "blizzard", "breeze", "cloud", "flood",
                "drought", "hailstone", "rainbow", "frost", "gale", "monsoon", "heatwave", "fog",
                "puddle", "umbrella", "season", "snowfall", "barometer", "cyclone", "sunrise", "mist"],
    "football": ["stadium", "referee", "striker", "goalkeeper", "tournament", "penalty", "midfielder",
                 "coach", "league", "supporter", "trophy", "pitch", "captain", "whistle", "season",
                 "defender", "header", "transfer", "match", "jersey", "manager", "derby", "club", "goal"],
    "architecture": ["facade", "balcony", "staircase", "courtyard", "column", "archway", "skyscraper",
                     "blueprint", "foundation", "window", "chimney", "rooftop", "corridor", "pavilion",
                     "gallery", "terrace", "basement", "tower", "beam", "mosaic", "atrium", "gate",
                     "cottage", "plaza"],
    "wildlife": ["badger", "otter", "heron", "falcon", "meadow", "burrow", "squirrel", "woodpecker",
                 "salmon", "reindeer", "hedgehog", "marsh", "owl", "beaver", "fox", "lizard",
                 "sparrow", "wolf", "rabbit", "moth", "kingfisher", "deer", "nest", "trout"],
}

ADJECTIVES = [
    "quiet", "ancient", "modern", "narrow", "generous", "careful", "bright", "hidden", "sturdy", "fragile",
    "curious", "patient", "famous", "ordinary", "remote", "crowded", "gentle", "bitter", "golden", "humble",
    "clever", "dusty", "elegant", "familiar", "hollow", "honest", "local", "massive", "modest", "noisy",
    "obvious", "polished", "rapid", "rural", "seasonal", "simple", "slender", "steady", "stubborn", "subtle",
    "tidy", "tiny", "unusual", "vivid", "warm", "wooden", "young", "broad", "calm", "cheerful",
    "delicate", "distant", "eager", "fierce", "graceful", "heavy", "lively", "lonely", "mellow", "nervous",
    "peaceful", "practical", "rare", "rusty", "shallow", "silent", "smooth", "spare", "strange", "swift",
    "thoughtful", "urban", "vast", "weary", "wild", "wise", "bold", "crisp", "fresh", "proud",
]

# (base, past, third person, gerund)
VERBS = [
    ("build", "built", "builds", "building"), ("repair", "repaired", "repairs", "repairing"),
    ("inspect", "inspected", "inspects", "inspecting"), ("describe", "described", "describes", "describing"),
    ("discover", "discovered", "discovers", "discovering"), ("measure", "measured", "measures", "measuring"),
    ("paint", "painted", "paints", "painting"), ("follow", "followed", "follows", "following"),
    ("borrow", "borrowed", "borrows", "borrowing"), ("protect", "protected", "protects", "protecting"),
    ("explain", "explained", "explains", "explaining"), ("carry", "carried", "carries", "carrying"),
    ("collect", "collected", "collects", "collecting"), ("visit", "visited", "visits", "visiting"),
    ("clean", "cleaned", "cleans", "cleaning"), ("study", "studied", "studies", "studying"),
    ("move", "moved", "moves", "moving"), ("replace", "replaced", "replaces", "replacing"),
    ("design", "designed", "designs", "designing"), ("sell", "sold", "sells", "selling"),
    ("find", "found", "finds", "finding"), ("watch", "watched", "watches", "watching"),
    ("test", "tested", "tests", "testing"), ("record", "recorded", "records", "recording"),
    ("prepare", "prepared", "prepares", "preparing"), ("support", "supported", "supports", "supporting"),
    ("compare", "compared", "compares", "comparing"), ("improve", "improved", "improves", "improving"),
    ("share", "shared", "shares", "sharing"), ("order", "ordered", "orders", "ordering"),
    ("open", "opened", "opens", "opening"), ("close", "closed", "closes", "closing"),
    ("photograph", "photographed", "photographs", "photographing"), ("map", "mapped", "maps", "mapping"),
    ("guard", "guarded", "guards", "guarding"), ("rebuild", "rebuilt", "rebuilds", "rebuilding"),
    ("restore", "restored", "restores", "restoring"), ("examine", "examined", "examines", "examining"),
    ("praise", "praised", "praises", "praising"), ("question", "questioned", "questions", "questioning"),
    ("plan", "planned", "plans", "planning"), ("fund", "funded", "funds", "funding"),
    ("polish", "polished", "polishes", "polishing"), ("deliver", "delivered", "delivers", "delivering"),
    ("welcome", "welcomed", "welcomes", "welcoming"), ("recommend", "recommended", "recommends", "recommending"),
    ("ignore", "ignored", "ignores", "ignoring"), ("organize", "organized", "organizes", "organizing"),
]

ADVERBS = [
    "quickly", "slowly", "carefully", "rarely", "often", "quietly", "eagerly", "gently", "firmly", "openly",
    "finally", "suddenly", "usually", "barely", "easily", "happily", "patiently", "roughly", "simply",
    "clearly", "briefly", "nearly", "proudly", "boldly", "calmly", "gradually", "largely", "mostly",
]

FIRST_NAMES = [
    "Maria", "James", "Aisha", "Tomas", "Elena", "Kwame", "Ingrid", "Rahul", "Sofia", "Daniel",
    "Mei", "Oliver", "Fatima", "Lucas", "Hannah", "Diego", "Priya", "Samuel", "Chloe", "Mateo",
    "Amara", "Henrik", "Yuki", "Gabriel", "Leila", "Owen", "Nadia", "Felix", "Rosa", "Victor",
    "Clara", "Emeka", "Julia", "Arjun", "Greta", "Hugo", "Isabel", "Kenji", "Lena", "Marcus",
    "Nora", "Pablo", "Ruth", "Simon", "Tara", "Uma", "Walter", "Zara", "Bruno", "Alice",
]

LAST_NAMES = [
    "Garcia", "Okafor", "Lindqvist", "Patel", "Novak", "Tanaka", "Moreau", "Schmidt", "Costa", "Byrne",
    "Kowalski", "Haddad", "Nguyen", "Silva", "Fischer", "Mensah", "Rossi", "Andersen", "Kaur", "Dubois",
    "Jensen", "Murphy", "Petrov", "Yamamoto", "Alvarez", "Brennan", "Chen", "Delgado", "Eriksen", "Ferrari",
    "Gomez", "Hoffman", "Ivanova", "Johansson", "Keller", "Lopez", "Mbeki", "Nilsen", "Olsen", "Park",
]

CITIES = [
    "Lisbon", "Oslo", "Nairobi", "Toronto", "Kyoto", "Porto", "Glasgow", "Denver", "Seville", "Tallinn",
    "Auckland", "Bergen", "Cork", "Dresden", "Florence", "Hobart", "Krakow", "Lyon", "Malaga", "Nantes",
    "Ottawa", "Perth", "Quebec", "Riga", "Salzburg", "Tampere", "Utrecht", "Valencia", "Winnipeg", "Zurich",
    "Accra", "Bologna", "Cardiff", "Galway", "Halifax", "Leeds", "Memphis", "Naples", "Turin", "Vilnius",
]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]

TIME_PHRASES = [
    "last spring", "early in the morning", "after the long winter", "during the summer holidays",
    "before the harvest", "late one evening", "in the autumn", "over the weekend", "every other week",
    "at the start of the decade", "a few years ago", "since the flood", "on a rainy afternoon",
    "before dawn", "after midnight", "throughout the festival", "later that month", "in recent years",
]

PLACES = [
    "near the old mill", "behind the town hall", "along the river", "at the edge of the forest",
    "beside the market square", "on the hill above the bay", "in a small workshop", "under the railway arch",
    "next to the library", "across the valley", "inside the community centre", "by the harbour wall",
    "on the northern coast", "in the city centre", "at the county fair", "in a rented garage",
]

# Words used to edit near-duplicate copies: plain, alphabetic, not in the lists above.
EDIT_WORDS = [
    "notably", "meanwhile", "indeed", "apparently", "certainly", "perhaps", "likewise", "besides",
    "otherwise", "somehow", "admittedly", "frankly", "naturally", "honestly", "instead", "anyway",
]

BOARDS = ["gardening", "astronomy", "cooking", "railways", "finance", "sailing", "software", "music"]
SECTIONS = ["business", "science", "culture", "sport", "local", "travel", "technology", "health"]

# Code identifiers: verb_noun names give thousands of distinct functions.
CODE_VERBS = [
    "load", "parse", "compute", "merge", "fetch", "render", "update", "validate", "build", "split",
    "flush", "encode", "decode", "normalize", "resolve", "register", "collect", "format", "scan", "sort",
    "filter", "apply", "reset", "emit", "track", "cache", "compress", "export", "import", "sync",
]
CODE_NOUNS = [
    "config", "record", "batch", "token", "user", "order", "invoice", "session", "payload", "header",
    "row", "column", "event", "metric", "queue", "buffer", "report", "schema", "index", "segment",
    "message", "channel", "account", "price", "item", "node", "edge", "path", "entry", "chunk",
    "window", "frame", "query", "result", "task", "worker", "job", "route", "handler", "sample",
]
CODE_ATTRS = ["size", "count", "name", "score", "weight", "limit", "offset", "status", "priority", "total",
              "label", "kind", "owner", "created", "value", "parent", "depth", "timeout", "retries", "flags"]
PY_IMPORTS = ["os", "sys", "json", "math", "time", "logging", "hashlib", "itertools", "functools",
              "collections", "dataclasses", "pathlib", "re", "random", "statistics", "typing"]
JS_IMPORTS = ["fs", "path", "events", "util", "crypto", "stream", "zlib", "url", "os", "assert"]
